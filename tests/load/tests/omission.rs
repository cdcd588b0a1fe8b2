//! Coordinated omission: a server that stalls for one second in the middle of a run. From
//! intended send times the stall shows in p99 and max; the same run timed from actual
//! send times (what a closed-model tool reports) hides it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use loadtest::engine::{Live, run};
use loadtest::scenario::Scenario;
use tokio::time::Instant;

/// Answers at once, except that requests arriving in [1 s, 2 s) wait until 2 s.
async fn stalling_server() -> String {
    let started = Instant::now();
    let app = Router::new().route(
        "/work",
        get(move || async move {
            let now = started.elapsed();
            if now >= Duration::from_secs(1) && now < Duration::from_secs(2) {
                tokio::time::sleep_until(started + Duration::from_secs(2)).await;
            }
            "done"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_second_stall_shows_in_p99_and_max() {
    let target = stalling_server().await;
    // Four connections, like a small closed-model tester; the open model keeps the
    // schedule anyway and charges the wait to the requests that were due.
    let scenario = Scenario::parse(
        "stall.yaml",
        "name: stall\nstages: [ { duration: 3s, rate: 200 } ]\nsteps: [ { name: work, path: /work } ]\nmax_in_flight: 4\nmax_lateness: 5s\n",
    )
    .unwrap();
    let result = run(&scenario, &target, Arc::new(Live::default()), 2)
        .await
        .unwrap();
    let stats = &result.steps["work"];
    assert_eq!(stats.completed(), 600);
    assert_eq!(stats.dropped, 0);
    let (p99, max) = (stats.latency_ms(99.0), stats.max_ms());
    let (service_p99, service_p50) = (stats.service_ms(99.0), stats.service_ms(50.0));
    println!(
        "from intended send: p99 {p99} ms, max {max} ms; from actual send: p50 {service_p50} ms, p99 {service_p99} ms"
    );
    assert!(max >= 900.0, "the stall shows in max: {max} ms");
    assert!(
        p99 >= 800.0,
        "about a third of the requests were due during the stall: p99 {p99} ms"
    );
    assert!(
        service_p99 < 100.0,
        "timed from actual sends the stall almost vanishes: p99 {service_p99} ms"
    );
}
