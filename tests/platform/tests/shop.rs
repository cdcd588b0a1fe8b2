//! The shop journey (catalogue, search, a confirmed and a declined order, notifications,
//! the audit chain) through the gateway with every service as its own process on its own
//! PostgreSQL database, events over a Tansu broker. The embedded mode runs the same
//! journey against `sloop up` (`platform/tests/up.rs`).

use platform_tests::api::ApiClient;
use platform_tests::shop::shop_journey;
use platform_tests::{Platform, gateway_config_file};
use sloop_kit::testing::OtlpReceiver;

#[tokio::test(flavor = "multi_thread")]
async fn the_shop_journey_against_processes_on_postgres_and_tansu() {
    let receiver = OtlpReceiver::start().await;
    let platform = Platform::start_with_shop(
        std::path::Path::new(env!("CARGO_BIN_EXE_platform-service")),
        &receiver.endpoint,
        &gateway_config_file(1000, 1000),
    )
    .await;
    shop_journey(&ApiClient::new(platform.gateway.url("")), 1).await;
    platform.stop().await;
}
