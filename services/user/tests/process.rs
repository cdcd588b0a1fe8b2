//! The real `sloop-user` binary as a process: SIGTERM drains in-flight requests, flushes
//! spans and exits 0; `OTEL_SDK_DISABLED=true` switches telemetry off.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use sloop_kit::testing::OtlpReceiver;
use support::Service;

/// Exports spans to `receiver` over OTLP/HTTP.
fn exporting_to(receiver: &OtlpReceiver) -> [(&'static str, &str); 2] {
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_requests_flushes_spans_and_exits_zero() {
    let receiver = OtlpReceiver::start().await;
    let service = Service::start(&exporting_to(&receiver));
    let addr = service.addr.clone();

    // Start a request and leave its body half sent: it is now in flight.
    let body = br#"{"email":"inflight@example.com","name":"In Flight"}"#;
    let mut stream = TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "POST /users HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body[..10]).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    service.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Not accepting any more...
    assert!(
        TcpStream::connect(&addr).is_err(),
        "a draining server must not accept new connections"
    );
    // ...but the request already in flight completes.
    stream.write_all(&body[10..]).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 201"),
        "in-flight request: {response}"
    );

    let logs = service.wait_for_clean_exit().await;
    let span = receiver
        .wait_for(Duration::from_secs(2), |s| s.name == "POST /users")
        .await;
    assert!(
        span.is_some(),
        "the in-flight request's span was flushed before exit; received: {:?}",
        receiver.spans()
    );

    // A line logged while handling the request carries its trace and request ids.
    let created: serde_json::Value = logs
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|entry: &serde_json::Value| entry["message"] == "user created")
        .unwrap_or_else(|| panic!("no `user created` line in:\n{}", logs.join("\n")));
    let span = span.unwrap();
    assert_eq!(created["trace_id"], span.trace_id.as_str(), "{created}");
    assert_eq!(created["span_id"], span.span_id.as_str(), "{created}");
    assert_eq!(
        created["request_id"].as_str().map(str::len),
        Some(36),
        "{created}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn otel_sdk_disabled_exports_no_spans_and_records_no_request_metrics() {
    let receiver = OtlpReceiver::start().await;
    let service = Service::start(
        &[
            exporting_to(&receiver).as_slice(),
            &[("OTEL_SDK_DISABLED", "true")],
        ]
        .concat(),
    );
    let client = reqwest::Client::new();

    let created = client
        .post(service.url("/users"))
        .json(&serde_json::json!({"email": "off@example.com", "name": "Off"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "the API works with telemetry off");
    assert!(
        created.headers().get("x-request-id").is_none(),
        "no request-id layer when telemetry is off"
    );
    let metrics = client
        .get(service.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics.contains("http_server_requests_total"),
        "no request metrics when telemetry is off:\n{metrics}"
    );

    service.sigterm();
    service.wait_for_clean_exit().await;
    // Shutdown flushes every span, so anything exported has arrived by now.
    let late = receiver
        .wait_for(Duration::from_millis(500), |_| true)
        .await;
    assert!(
        late.is_none(),
        "spans exported with OTEL_SDK_DISABLED=true: {late:?}"
    );
}
