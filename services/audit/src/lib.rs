//! Placeholder until the service is written.
