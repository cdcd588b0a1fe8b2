//! Runs the shop journey once against a running platform's gateway and exits non-zero if any
//! step fails: `cargo run -p platform-tests --example journey -- http://127.0.0.1:8080 2`,
//! the second argument being how many chat instances run behind the gateway (1 when left
//! out; with more, the two chat users must land on different instances).
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
    let chat_instances: usize = match std::env::args().nth(2) {
        None => 1,
        Some(n) => match n.parse() {
            Ok(n) if n >= 1 => n,
            _ => {
                eprintln!(
                    "the second argument is how many chat instances run (1 or more), not {n:?}"
                );
                std::process::exit(2);
            }
        },
    };
    let started = std::time::Instant::now();
    shop_journey(
        &ApiClient::new(gateway.trim_end_matches('/')),
        chat_instances,
    )
    .await;
    println!(
        "the shop journey passed against {gateway} ({chat_instances} chat instance(s)) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
