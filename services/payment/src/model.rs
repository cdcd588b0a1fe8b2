//! Charges and refunds as clients see them.

use serde::{Deserialize, Serialize};
use sloop_events::Money;
use utoipa::{IntoParams, ToSchema};

/// Where a charge is. `pending` until the provider answers; `voided` when its order was
/// cancelled before that; `refunded` when it was cancelled after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChargeStatus {
    Pending,
    Succeeded,
    Failed,
    Voided,
    Refunded,
}

impl ChargeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Voided => "voided",
            Self::Refunded => "refunded",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Succeeded,
            Self::Failed,
            Self::Voided,
            Self::Refunded,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

/// One order's charge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Charge {
    #[schema(format = "uuid")]
    pub id: String,
    pub order_id: String,
    pub amount: Money,
    pub payment_method: String,
    pub status: ChargeStatus,
    /// Why it failed, was voided or refunded.
    pub reason: Option<String>,
    /// The provider's id for an approved charge.
    pub provider_reference: Option<String>,
    /// Calls made to the provider so far.
    pub attempts: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// A charge to make now, outside the order saga.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCharge {
    /// The order paid for (a store order's id); one charge per order.
    #[schema(format = "uuid")]
    pub order_id: String,
    pub amount: Money,
    /// `card`, or `test-decline` for a card the provider always declines.
    #[serde(default = "default_method")]
    #[schema(min_length = 1, max_length = 50, pattern = "^[a-z0-9-]+$")]
    pub payment_method: String,
}

pub fn default_method() -> String {
    "card".to_owned()
}

/// Why a charge is paid back.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChargeQuery {
    /// The order whose charge to find.
    #[param(format = "uuid")]
    pub order_id: String,
}
