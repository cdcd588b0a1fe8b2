//! Typed requests and responses for tests: send, then assert on status, headers, JSON and
//! problem documents without repeating the same ten lines in every test.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::problem::PROBLEM_JSON;

/// A request being built.
pub struct TestRequest(reqwest::RequestBuilder);

impl TestRequest {
    pub fn new(builder: reqwest::RequestBuilder) -> Self {
        Self(builder)
    }

    pub fn header(self, name: &str, value: &str) -> Self {
        Self(self.0.header(name, value))
    }

    pub fn bearer(self, token: &str) -> Self {
        Self(self.0.bearer_auth(token))
    }

    pub fn json(self, body: &Value) -> Self {
        Self(self.0.json(body))
    }

    /// A raw body, sent as is (no content type unless set with [`TestRequest::header`]).
    pub fn body(self, body: impl Into<reqwest::Body>) -> Self {
        Self(self.0.body(body))
    }

    /// Sends and reads the whole response. Panics if no response came.
    pub async fn send(self) -> TestResponse {
        let response = self.0.send().await.expect("the request got a response");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("the body was read").to_vec();
        TestResponse {
            status,
            headers,
            body,
        }
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON. Panics, showing the body, if it is not.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not the expected JSON ({e}): {}", self.text()))
    }

    pub fn value(&self) -> Value {
        self.json()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status, showing the body when it differs; returns self for chaining.
    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self
    }

    /// Asserts a problem document with `status` whose detail mentions `needle`.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, needle: &str) -> Value {
        self.assert_status(status);
        assert_eq!(
            self.header("content-type"),
            Some(PROBLEM_JSON),
            "{}",
            self.text()
        );
        let body = self.value();
        assert_eq!(body["status"], status);
        assert!(
            body["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:sloop:problem:")),
            "{body}"
        );
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.to_lowercase().contains(&needle.to_lowercase()),
            "detail {detail:?} should mention {needle:?}"
        );
        body
    }

    pub fn is(&self, status: StatusCode) -> bool {
        self.status == status
    }
}
