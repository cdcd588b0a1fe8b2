//! Products, categories and orders as clients see them, and the requests that make them.

use serde::{Deserialize, Serialize};
use sloop_events::Money;
use utoipa::{IntoParams, ToSchema};

/// A group of products, named by a URL-safe slug.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Category {
    /// Lower-case letters, digits and dashes, e.g. `kitchen`.
    pub slug: String,
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
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
    /// The slug of an existing category.
    pub category: String,
    pub price: Money,
    /// Units in stock to start with.
    #[serde(default)]
    pub available: i64,
}

/// Fields to change; absent ones stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub price: Option<Money>,
}

/// Units to add to (or, negative, take from) a product's stock.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockChange {
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
    pub q: Option<String>,
    /// A category slug.
    pub category: Option<String>,
    /// Lowest price, minor units, inclusive.
    pub min_price: Option<i64>,
    /// Highest price, minor units, inclusive.
    pub max_price: Option<i64>,
    /// Only prices in this currency.
    pub currency: Option<String>,
    #[param(inline)]
    pub sort: Option<ProductSort>,
    /// `next_cursor` of the previous page, with the same filters and sort.
    pub cursor: Option<String>,
    /// 1 to 100, default 20.
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
    pub quantity: u32,
}

/// An order to place for the signed-in user. Send an `Idempotency-Key` header to retry
/// safely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub lines: Vec<LineRequest>,
    /// `card` (the default), or `test-decline` for a card the provider always declines.
    #[serde(default = "default_payment_method")]
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
    pub user_id: Option<String>,
    #[param(inline)]
    pub status: Option<OrderStatus>,
    pub cursor: Option<String>,
    /// 1 to 100, default 20.
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
