//! Runs the shop journey once against a running platform's gateway and exits non-zero if any
//! step fails: `cargo run -p platform-tests --example journey -- http://127.0.0.1:8080`.
//! scripts/test.sh runs it against the distributed mode started by
//! scripts/distributed-up.sh. The platform must make `admin@example.com` an admin
//! (AUTH_ADMIN_EMAILS).

use platform_tests::api::ApiClient;
use platform_tests::shop::shop_journey;

#[tokio::main]
async fn main() {
    let gateway = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let started = std::time::Instant::now();
    shop_journey(&ApiClient::new(gateway.trim_end_matches('/'))).await;
    println!(
        "the shop journey passed against {gateway} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
