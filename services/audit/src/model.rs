//! The audit log as clients see it: entries, pages of them, the query that selects them
//! and the result of a verification.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::chain::Entry;

/// One event in the audit log, with its place in the hash chain.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AuditEntry {
    /// Position in the log: 1, 2, 3 ... without gaps.
    #[schema(minimum = 1)]
    pub seq: i64,
    /// The event's CloudEvents id; each event is in the log once.
    pub event_id: String,
    /// The topic it was published on, e.g. `sloop.user`.
    pub topic: String,
    /// CloudEvents `type`, e.g. `sloop.user.created`. Types the log does not know are
    /// recorded all the same.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub kind: String,
    /// CloudEvents `source`: `/sloop/<service>`.
    pub source: String,
    /// The entity the event is about (a user id, an order id).
    pub subject: String,
    /// Version of the event's data schema.
    pub schema_version: i64,
    /// The event's time, as the producer sent it (RFC 3339).
    pub time: String,
    /// The same instant in UTC, fixed width; absent when `time` is not RFC 3339. Time-range
    /// queries compare this.
    #[schema(format = DateTime)]
    pub time_utc: Option<String>,
    /// The event's data. The hash covers its stored text, which is this value written as
    /// compact JSON with members in the order shown.
    pub data: serde_json::Value,
    /// When the log appended the entry (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub recorded_at: String,
    /// `hash` of entry `seq - 1`; 64 zeros for the first entry.
    #[schema(min_length = 64, max_length = 64)]
    pub prev_hash: String,
    /// Hex SHA-256 over `seq`, `prev_hash` and every other field (the encoding is in the
    /// service's documentation, `chain.rs`).
    #[schema(min_length = 64, max_length = 64)]
    pub hash: String,
}

impl From<Entry> for AuditEntry {
    /// Stored data is the JSON text the service wrote; should it no longer parse (edited
    /// in the database), it is shown as the string it is rather than failing the read.
    fn from(entry: Entry) -> Self {
        let data = serde_json::from_str(&entry.data)
            .unwrap_or_else(|_| serde_json::Value::String(entry.data.clone()));
        Self {
            seq: entry.seq,
            event_id: entry.event_id,
            topic: entry.topic,
            kind: entry.kind,
            source: entry.source,
            subject: entry.subject,
            schema_version: entry.schema_version,
            time: entry.time,
            time_utc: entry.time_utc,
            data,
            recorded_at: entry.recorded_at,
            prev_hash: entry.prev_hash,
            hash: entry.hash,
        }
    }
}

/// One page of entries, in log order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<i64>,
}

/// Query of `GET /audit/events`. Every parameter is read as text and checked by the
/// handler, so a bad one gets a message naming it and saying what is expected.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only events about this subject (exact match).
    #[param(min_length = 1, max_length = 500, pattern = "^[A-Za-z0-9._:@/-]+$")]
    pub subject: Option<String>,
    /// Only events of this CloudEvents type (exact match).
    #[serde(rename = "type")]
    #[param(
        rename = "type",
        min_length = 1,
        max_length = 500,
        pattern = "^[A-Za-z0-9._:@/-]+$"
    )]
    pub kind: Option<String>,
    /// Only events whose time is at or after this instant (RFC 3339; write `+` as `%2B`).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Only events whose time is before this instant (RFC 3339; write `+` as `%2B`).
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// `next_cursor` from the previous page: the `seq` of its last entry.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 500;

/// What `GET /audit/verify` found: the whole chain intact, or where it first breaks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(untagged)]
pub enum Verification {
    Intact(Intact),
    Broken(Broken),
}

impl Verification {
    pub fn is_intact(&self) -> bool {
        matches!(self, Self::Intact(_))
    }
}

/// Every entry links to the one before and matches its hash.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Intact {
    /// Always `true`.
    pub intact: bool,
    /// Entries in the log.
    pub entries: i64,
    /// Hash of the last entry (64 zeros for an empty log): what the next entry will link
    /// to. Keep it elsewhere to detect the log being cut short later.
    pub last_hash: String,
}

/// The chain is broken: an entry was changed, removed or inserted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Broken {
    /// Always `false`.
    pub intact: bool,
    /// Entries read, the broken one included.
    pub entries_checked: i64,
    pub first_broken: BrokenEntry,
}

/// The first entry that does not fit the chain.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct BrokenEntry {
    pub seq: i64,
    pub event_id: String,
    /// What is wrong: `hash mismatch: stored ... computed ...`, `prev_hash does not match
    /// entry N` or `seq gap: expected N found M`.
    pub problem: String,
}
