//! Which service the current thread works for, when several services share one process.
//!
//! `sloop up` runs every service in one process, each on a Tokio runtime of its own whose
//! threads are entered into that service's scope. Spans, metrics and log lines made on those
//! threads then belong to that service: its tracer (its `service.name`), its Prometheus
//! registry, its `service` on log lines — exactly as if it ran alone. A process with one
//! service never enters a scope, and everything belongs to that service.
//!
//! A scope is a service's name, or `name#n` for its n-th instance when the process runs
//! several (`chat#2`): that instance gets a registry and a tracer (with its own
//! `service.instance.id`) of its own, under the service's name.

use std::cell::Cell;

use opentelemetry::Context;
use opentelemetry::trace::{SpanBuilder, Tracer};
use opentelemetry_sdk::trace::{SdkTracer, Span};

thread_local! {
    static CURRENT: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// Makes the current thread work for `service` from now on. Call it first thing on every
/// thread of the service's runtime (`tokio::runtime::Builder::on_thread_start`).
pub fn enter(service: &'static str) {
    CURRENT.with(|current| current.set(Some(service)));
}

/// The service the current thread works for, if it was entered into one.
pub fn current() -> Option<&'static str> {
    CURRENT.with(Cell::get)
}

/// The service a scope belongs to: `chat` for `chat` and for `chat#2`.
pub fn service_name(scope: &str) -> &str {
    scope.split_once('#').map_or(scope, |(service, _)| service)
}

/// Runs `work` in `service`'s scope on this thread, then restores the previous scope.
pub fn with<T>(service: &'static str, work: impl FnOnce() -> T) -> T {
    let previous = CURRENT.with(|current| current.replace(Some(service)));
    let result = work();
    CURRENT.with(|current| current.set(previous));
    result
}

/// Starts each span with the tracer of the service whose thread starts it, so it is exported
/// under that service's `service.name`.
///
/// One layer with this tracer, not a layer per service: `tracing-opentelemetry` finds "the"
/// OpenTelemetry layer by downcasting the subscriber, so with several, the first one would
/// start every span whose context is asked for, under its own service's name.
pub(crate) struct ScopedTracer {
    pub(crate) services: Vec<(&'static str, SdkTracer)>,
    /// For spans made outside every service's threads: a tracer that exports nowhere.
    pub(crate) outside: SdkTracer,
}

impl ScopedTracer {
    fn current(&self) -> &SdkTracer {
        current()
            .and_then(|scope| self.services.iter().find(|(service, _)| *service == scope))
            .map_or(&self.outside, |(_, tracer)| tracer)
    }
}

impl Tracer for ScopedTracer {
    type Span = Span;

    fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> Span {
        self.current().build_with_context(builder, parent_cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_scope_belongs_to_its_service() {
        assert_eq!(service_name("chat"), "chat");
        assert_eq!(service_name("chat#2"), "chat");
    }

    #[test]
    fn a_thread_is_in_no_scope_until_entered() {
        std::thread::spawn(|| {
            assert_eq!(current(), None);
            enter("store");
            assert_eq!(current(), Some("store"));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn with_restores_the_previous_scope() {
        std::thread::spawn(|| {
            enter("store");
            let inside = with("payment", current);
            assert_eq!(inside, Some("payment"));
            assert_eq!(current(), Some("store"));
        })
        .join()
        .unwrap();
    }
}
