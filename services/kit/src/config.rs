//! Flags and environment variables every service takes, with the same names everywhere.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::ServiceSpec;

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

    /// Where events go: `memory` (in-process) or `kafka://HOST:PORT`.
    #[arg(long, env = "EVENT_BUS", default_value = "memory")]
    pub event_bus: EventBus,

    /// Most database connections this service holds open.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,

    /// A request still running after this long is answered 503, e.g. `10s`, `500ms`.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    pub body_limit_bytes: usize,

    /// After SIGTERM or Ctrl-C, how long in-flight requests get to finish.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

impl ServiceArgs {
    pub fn listen_addr(&self, spec: ServiceSpec) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], spec.default_port)))
    }

    pub fn database_url(&self, spec: ServiceSpec) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://sloop-{}.db", spec.name))
    }
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|e| format!("{e}; write it like 10s, 500ms or 2m"))
}

/// The event bus a service publishes to, chosen by URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventBus {
    Memory,
    Kafka { bootstrap: String },
}

impl FromStr for EventBus {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.strip_prefix("kafka://") {
            _ if value == "memory" => Ok(Self::Memory),
            Some(bootstrap) if !bootstrap.is_empty() => Ok(Self::Kafka {
                bootstrap: bootstrap.to_owned(),
            }),
            _ => Err(format!(
                "`{value}` is not an event bus; use `memory` or `kafka://HOST:PORT`"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_bus_urls() {
        assert_eq!("memory".parse::<EventBus>(), Ok(EventBus::Memory));
        assert_eq!(
            "kafka://127.0.0.1:9092".parse::<EventBus>(),
            Ok(EventBus::Kafka {
                bootstrap: "127.0.0.1:9092".to_owned()
            })
        );
        assert!("kafka://".parse::<EventBus>().is_err());
        assert!("rabbit://x".parse::<EventBus>().is_err());
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").unwrap_err().contains("10s"));
    }
}
