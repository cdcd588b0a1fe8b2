//! A Loki push-API receiver for tests: snappy-compressed protobuf `PushRequest`s, decoded as
//! Loki itself decodes them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use prost::Message;

use super::{serve_on_loopback, wait_until};

/// Loki's `logproto` messages, as much of them as a push carries.
mod logproto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamAdapter {
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EntryAdapter {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(string, tag = "2")]
        pub line: String,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

/// One received log line with the labels of its stream.
#[derive(Debug, Clone)]
pub struct LokiEntry {
    /// The stream's labels, e.g. `service` and `level`.
    pub labels: BTreeMap<String, String>,
    pub unix_nanos: i128,
    /// The line as sent.
    pub line: String,
    /// The line parsed as JSON (`Null` when it is not JSON).
    pub fields: serde_json::Value,
}

type Entries = Arc<Mutex<Vec<LokiEntry>>>;

/// A Loki stand-in listening on a loopback port for as long as the current runtime lives.
pub struct LokiReceiver {
    /// Base URL to put in `LOKI_URL`.
    pub url: String,
    entries: Entries,
}

impl LokiReceiver {
    pub async fn start() -> Self {
        let entries: Entries = Arc::default();
        let app = Router::new()
            .route("/loki/api/v1/push", post(push))
            .with_state(entries.clone());
        let url = format!("http://{}", serve_on_loopback(app).await);
        Self { url, entries }
    }

    pub fn entries(&self) -> Vec<LokiEntry> {
        self.entries.lock().expect("entry list lock").clone()
    }

    /// Waits up to `timeout` for an entry matching `wanted`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        wanted: impl Fn(&LokiEntry) -> bool,
    ) -> Option<LokiEntry> {
        wait_until(timeout, || self.entries().into_iter().find(|e| wanted(e))).await
    }
}

/// Refuses what Loki would refuse: another content type or encoding, a body that does not
/// decompress or decode, a malformed label set.
async fn push(State(entries): State<Entries>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let has = |name: header::HeaderName, want: &str| headers.get(name).is_some_and(|v| v == want);
    if !has(header::CONTENT_TYPE, "application/x-protobuf")
        || !has(header::CONTENT_ENCODING, "snappy")
    {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE;
    }
    let Ok(raw) = snap::raw::Decoder::new().decompress_vec(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let Ok(request) = logproto::PushRequest::decode(raw.as_slice()) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut received = Vec::new();
    for stream in request.streams {
        let Some(labels) = parse_labels(&stream.labels) else {
            return StatusCode::BAD_REQUEST;
        };
        for entry in stream.entries {
            let at = entry.timestamp.unwrap_or_default();
            received.push(LokiEntry {
                labels: labels.clone(),
                unix_nanos: i128::from(at.seconds) * 1_000_000_000 + i128::from(at.nanos),
                fields: serde_json::from_str(&entry.line).unwrap_or(serde_json::Value::Null),
                line: entry.line,
            });
        }
    }
    entries.lock().expect("entry list lock").extend(received);
    StatusCode::NO_CONTENT
}

/// `{service="user",level="info"}` as a map.
fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    crate::exemplars::parse_labels(text.strip_prefix('{')?.strip_suffix('}')?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_parse_with_escapes() {
        let labels = parse_labels(r#"{service="user",level="info",note="a \"b\""}"#).unwrap();
        assert_eq!(labels["service"], "user");
        assert_eq!(labels["level"], "info");
        assert_eq!(labels["note"], "a \"b\"");
        assert!(parse_labels("service=user").is_none());
        assert!(parse_labels(r#"{service="user}"#).is_none());
    }
}
