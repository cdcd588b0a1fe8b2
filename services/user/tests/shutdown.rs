//! SIGTERM on the real `sloop-user` binary: a request in flight completes, new connections
//! are refused, the process exits 0 and its spans reach the collector.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sloop_kit::testing::OtlpReceiver;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_requests_flushes_spans_and_exits_zero() {
    let receiver = OtlpReceiver::start().await;
    let db = std::env::temp_dir().join(format!("sloop-shutdown-{}.db", uuid::Uuid::new_v4()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_sloop-user"))
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sloop-user");

    // The service logs its bound address; port 0 means we must read it from there.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("sloop-user exited before listening")
            .unwrap();
        let entry: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        if entry["message"] == "listening" {
            break entry["address"].as_str().unwrap().to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe; keep the lines.
    let logs = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<String>>());

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

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
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

    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "sloop-user did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "clean exit after SIGTERM");
    let span = receiver
        .wait_for(Duration::from_secs(2), |s| s.name == "POST /users")
        .await;
    assert!(
        span.is_some(),
        "the in-flight request's span was flushed before exit; received: {:?}",
        receiver.spans()
    );

    // A line logged while handling the request carries its trace and request ids.
    let logs = logs.join().unwrap();
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
    let _ = std::fs::remove_file(db);
}
