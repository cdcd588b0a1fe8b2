//! The events sloop services exchange, declared once for producer and consumers alike: each
//! event's CloudEvents `type`, the topic it travels on, its data schema version and its
//! payload. A change a consumer must notice bumps the version; consumers check it with
//! [`sloop_kit::Event::is`].
//!
//! Every event travels in the kit's envelope ([`sloop_kit::event`]): CloudEvents 1.0
//! attributes as `ce_*` headers, the payload as JSON, keyed by subject.

pub mod user;
