//! The audit service's own metrics, beside the HTTP and messaging metrics the kit records.
//! Like the kit's, each carries the `service` label, so services sharing a process (the
//! platform binary, tests) keep their series apart.

use metrics::{counter, describe_counter, describe_gauge, gauge};

use crate::NAME;

/// 1 when the last verification found the chain intact, 0 when it found it broken.
pub const CHAIN_INTACT: &str = "audit_chain_intact";
/// Entries appended to the log, by event type.
pub const ENTRIES: &str = "audit_entries_total";

/// Label value for event types the platform does not declare: the type comes from the
/// message, and a label must not take arbitrary values from it.
const OTHER_TYPE: &str = "other";

/// Gives the metrics their help text (the kit runs it at start, see `Service::metrics`).
pub fn describe() {
    describe_gauge!(
        CHAIN_INTACT,
        "Whether the last verification of the audit hash chain found it intact (1) or broken (0)."
    );
    describe_counter!(
        ENTRIES,
        "Events appended to the audit log, by event_type (`other` for undeclared types)."
    );
}

/// Records the outcome of a verification.
pub fn chain_verified(intact: bool) {
    gauge!(CHAIN_INTACT, "service" => NAME).set(if intact { 1.0 } else { 0.0 });
}

/// Counts one appended entry of type `kind`.
pub fn entry_appended(kind: &str) {
    counter!(ENTRIES, "service" => NAME, "event_type" => type_label(kind)).increment(1);
}

/// `kind` when the platform declares it (a bounded set), else `other`.
fn type_label(kind: &str) -> &'static str {
    sloop_events::all()
        .into_iter()
        .find(|declared| declared.name == kind)
        .map_or(OTHER_TYPE, |declared| declared.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_declared_types_become_label_values() {
        let created = sloop_events::user::CREATED.name;
        assert_eq!(type_label(created), created);
        assert_eq!(type_label("sloop.user.anything-else"), OTHER_TYPE);
    }
}
