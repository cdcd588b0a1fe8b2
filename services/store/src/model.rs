//! Products, categories and orders as clients see them, and the requests that make them.

use serde::{Deserialize, Serialize};
use sloop_events::Money;
use utoipa::{IntoParams, ToSchema};

/// A group of products, named by a URL-safe slug.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Category {
    /// Lower-case letters, digits and dashes, e.g. `kitchen`.
    #[schema(min_length = 1, max_length = 50, pattern = "^[a-z0-9-]+$")]
    pub slug: String,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
}

/// Something for sale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Product {
    #[schema(format = "uuid")]
    pub id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price: Money,
    /// Units that can still be ordered.
    pub available: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
    #[serde(default)]
    #[schema(
        max_length = 2000,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
    )]
    pub description: String,
    /// The slug of an existing category.
    #[schema(min_length = 1, max_length = 50, pattern = "^[a-z0-9-]+$")]
    pub category: String,
    pub price: Money,
    /// Units in stock to start with.
    #[serde(default, deserialize_with = "sloop_kit::validate::whole_i64")]
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub available: i64,
}

/// Fields to change; absent ones stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: Option<String>,
    #[schema(
        max_length = 2000,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
    )]
    pub description: Option<String>,
    #[schema(min_length = 1, max_length = 50, pattern = "^[a-z0-9-]+$")]
    pub category: Option<String>,
    pub price: Option<Money>,
}

/// Units to add to (or, negative, take from) a product's stock.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockChange {
    #[schema(minimum = -1_000_000_000, maximum = 1_000_000_000)]
    #[serde(deserialize_with = "sloop_kit::validate::whole_i64")]
    pub add: i64,
}

/// How to sort a product search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductSort {
    /// Oldest first (the default).
    #[default]
    Created,
    /// Newest first.
    Newest,
    Name,
    /// Cheapest first.
    PriceAsc,
    /// Dearest first.
    PriceDesc,
}

/// A product search. Every filter is optional; they combine with AND.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductQuery {
    /// Words that must all appear in the name or description (case-insensitive).
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// A category slug.
    #[param(min_length = 1, max_length = 50, pattern = "^[a-z0-9-]+$")]
    pub category: Option<String>,
    /// Lowest price, minor units, inclusive.
    pub min_price: Option<i64>,
    /// Highest price, minor units, inclusive.
    pub max_price: Option<i64>,
    /// Only prices in this currency.
    #[param(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    #[param(inline)]
    pub sort: Option<ProductSort>,
    /// `next_cursor` of the previous page, with the same filters and sort.
    pub cursor: Option<String>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProductPage {
    pub items: Vec<Product>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Where an order is in the saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Stock is reserved; payment is being taken.
    PendingPayment,
    Confirmed,
    /// Payment failed, timed out or the customer cancelled; the stock went back.
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "pending_payment",
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        [Self::PendingPayment, Self::Confirmed, Self::Cancelled]
            .into_iter()
            .find(|s| s.as_str() == value)
    }
}

/// One line of an order request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    #[schema(format = "uuid")]
    pub product_id: String,
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(deserialize_with = "sloop_kit::validate::whole_u32")]
    pub quantity: u32,
}

/// An order to place for the signed-in user. Send an `Idempotency-Key` header to retry
/// safely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// One line per product (lines for the same product are added up).
    #[schema(min_items = 1, max_items = 50)]
    pub lines: Vec<LineRequest>,
    /// `card` (the default), or `test-decline` for a card the provider always declines.
    #[serde(default = "default_payment_method")]
    #[schema(min_length = 1, max_length = 50, pattern = "^[a-z0-9-]+$")]
    pub payment_method: String,
}

fn default_payment_method() -> String {
    "card".to_owned()
}

/// A line of a placed order, priced when it was placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderLine {
    pub product_id: String,
    pub quantity: i64,
    pub unit_price: Money,
}

/// A status the order passed through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Transition {
    pub status: OrderStatus,
    pub reason: Option<String>,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    #[schema(format = "uuid")]
    pub id: String,
    pub user_id: String,
    pub status: OrderStatus,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub payment_method: String,
    /// Why it was cancelled.
    pub reason: Option<String>,
    /// The payment's charge, once paid.
    pub charge_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Oldest first.
    pub history: Vec<Transition>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// Admins only: another user's orders (default: your own).
    #[param(max_length = 100, pattern = "^[A-Za-z0-9._:@/-]+$")]
    pub user_id: Option<String>,
    #[param(inline)]
    pub status: Option<OrderStatus>,
    /// `next_cursor` of the previous page.
    #[param(format = "uuid")]
    pub cursor: Option<String>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderPage {
    /// Newest first.
    pub items: Vec<Order>,
    pub next_cursor: Option<String>,
}

pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 100;
