//! Flags and environment variables every service takes, with the same names everywhere.

use std::net::SocketAddr;
use std::time::Duration;

use crate::bus::BusUrl;

/// Common service settings. Each flag can also come from the environment variable named
/// beside it, which is how containers and Kubernetes set them.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// Address to listen on [default: 127.0.0.1 and the service's own port].
    #[arg(long, env = "LISTEN_ADDR")]
    pub listen: Option<SocketAddr>,

    /// `sqlite://FILE` (created on first start) or `postgres://USER:PASS@HOST/DB`
    /// [default: sqlite://sloop-<service>.db in the working directory].
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Where events go: `memory` (in-process: only services in this process see them) or
    /// `kafka://HOST:PORT` (a Kafka-protocol broker).
    #[arg(long, env = "EVENT_BUS", default_value = "memory")]
    pub event_bus: BusUrl,

    /// Base URL of a service this one calls, as NAME=URL (e.g.
    /// `user=http://10.0.0.7:8082`); repeat the flag, or comma-separate in the env
    /// [default: 127.0.0.1 and the platform's port for each].
    #[arg(long = "upstream", env = "UPSTREAMS", value_delimiter = ',', value_parser = parse_upstream)]
    pub upstreams: Vec<(String, String)>,

    /// Most database connections this service holds open.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,

    /// A request still running after this long is answered 503, e.g. `10s`, `500ms`.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10s", value_parser = sloop_duration::parse_positive)]
    pub request_timeout: Duration,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    pub body_limit_bytes: usize,

    /// After SIGTERM or Ctrl-C, how long in-flight requests get to finish.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = sloop_duration::parse_positive)]
    pub shutdown_timeout: Duration,

    /// Turn on fault injection (chaos testing): the fault layer on every API route, and the
    /// `/chaos/faults` admin API when CHAOS_TOKEN is set. Refused where
    /// DEPLOYMENT_ENVIRONMENT is production unless --chaos-force.
    #[arg(long, env = "CHAOS_ENABLED")]
    pub chaos: bool,

    /// Allow --chaos even where DEPLOYMENT_ENVIRONMENT is production.
    #[arg(long, env = "CHAOS_FORCE", requires = "chaos")]
    pub chaos_force: bool,

    /// Most fault rules active at once.
    #[arg(long, env = "CHAOS_MAX_FAULTS", default_value_t = chaos::DEFAULT_CAP)]
    pub chaos_max_faults: usize,

    /// How long a published event stays in the outbox table before it is deleted.
    #[arg(long, env = "OUTBOX_RETENTION", default_value = "7days", value_parser = sloop_duration::parse_positive)]
    pub outbox_retention: Duration,

    /// How long the id of an applied event is kept to recognise a redelivery. Keep it longer
    /// than the bus may redeliver (Kafka: the topics' retention).
    #[arg(long, env = "PROCESSED_EVENTS_RETENTION", default_value = "7days", value_parser = sloop_duration::parse_positive)]
    pub processed_events_retention: Duration,

    /// How often rows past their retention are looked for.
    #[arg(long, env = "RETENTION_SWEEP", default_value = "10m", value_parser = sloop_duration::parse_positive)]
    pub retention_sweep: Duration,
}

impl ServiceArgs {
    /// How long the kit keeps its own rows.
    pub fn retention(&self) -> crate::retention::Retention {
        crate::retention::Retention {
            outbox: self.outbox_retention,
            processed_events: self.processed_events_retention,
            every: self.retention_sweep,
        }
    }

    /// How chaos was asked for; the token comes only from the environment (CHAOS_TOKEN), so
    /// it never shows in a process listing.
    pub fn chaos_switch(&self) -> chaos::Switch {
        chaos::Switch {
            enabled: self.chaos,
            force: self.chaos_force,
            environment: std::env::var("DEPLOYMENT_ENVIRONMENT").ok(),
            token: std::env::var("CHAOS_TOKEN").ok(),
            cap: self.chaos_max_faults,
        }
    }
}

/// `NAME=URL`, with an http(s) URL.
fn parse_upstream(value: &str) -> Result<(String, String), String> {
    let (name, url) = value
        .split_once('=')
        .ok_or_else(|| format!("`{value}` is not NAME=URL, e.g. user=http://127.0.0.1:8082"))?;
    let valid = (url.starts_with("http://") || url.starts_with("https://"))
        && url
            .parse::<http::Uri>()
            .is_ok_and(|u| u.authority().is_some());
    if name.is_empty() || !valid {
        return Err(format!(
            "`{value}` is not NAME=URL with an http:// or https:// URL, e.g. user=http://127.0.0.1:8082"
        ));
    }
    Ok((name.trim().to_owned(), url.trim_end_matches('/').to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_are_name_equals_url() {
        assert_eq!(
            parse_upstream("user=http://10.0.0.7:8082/"),
            Ok(("user".to_owned(), "http://10.0.0.7:8082".to_owned()))
        );
        assert!(parse_upstream("user").unwrap_err().contains("NAME=URL"));
        assert!(parse_upstream("user=10.0.0.7:8082").is_err());
        assert!(parse_upstream("=http://x").is_err());
    }
}
