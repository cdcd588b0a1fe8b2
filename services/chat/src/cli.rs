//! The `sloop-chat` command line: the service's flags, and running it from them.

use std::time::Duration;

use clap::Parser;
use sloop_kit::{ServiceArgs, StartError};

use crate::ChatSettings;

/// The sloop chat service: rooms, members and messages, delivered in real time over one
/// WebSocket per client connection (GET /socket), with presence. Several instances may
/// share one database and one event bus (Kafka): each consumes the chat topic in a
/// consumer group of its own and delivers to the sockets it holds.
///
/// Starts on 127.0.0.1:8083 with a SQLite file in the working directory unless told
/// otherwise. Telemetry follows the OpenTelemetry environment variables
/// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, ...), plus LOKI_URL and SENTRY_DSN.
#[derive(Debug, Parser)]
#[command(name = "sloop-chat", version)]
pub struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    chat: ChatArgs,
}

#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// How often the server pings each WebSocket; one silent (no pong, no frame) for twice
    /// this is closed.
    #[arg(long, env = "CHAT_HEARTBEAT", default_value = "15s", value_parser = sloop_duration::parse_positive)]
    heartbeat: Duration,
    /// Frames a WebSocket may have waiting to be written; a socket whose queue is full when
    /// a frame comes is closed as too slow (code 1013).
    #[arg(long, env = "CHAT_SOCKET_QUEUE", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    socket_queue: u32,
}

impl ChatArgs {
    pub fn settings(&self) -> ChatSettings {
        ChatSettings {
            heartbeat: self.heartbeat,
            socket_queue: self.socket_queue as usize,
        }
    }
}

/// Runs the service until SIGTERM or Ctrl-C; refuses settings that cannot work.
pub async fn run(cli: Cli) -> Result<(), StartError> {
    let settings = cli.chat.settings();
    settings.validate().map_err(StartError::Setup)?;
    sloop_kit::run(crate::service(settings), cli.service).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_settings_defaults() {
        let cli = Cli::try_parse_from(["sloop-chat"]).unwrap();
        assert_eq!(cli.chat.settings(), ChatSettings::default());
    }

    #[test]
    fn flags_set_the_heartbeat_and_queue() {
        let cli = Cli::try_parse_from(["sloop-chat", "--heartbeat", "2s", "--socket-queue", "8"])
            .unwrap();
        assert_eq!(cli.chat.settings().heartbeat, Duration::from_secs(2));
        assert_eq!(cli.chat.settings().socket_queue, 8);
        assert!(Cli::try_parse_from(["sloop-chat", "--socket-queue", "0"]).is_err());
        assert!(Cli::try_parse_from(["sloop-chat", "--heartbeat", "0s"]).is_err());
    }
}
