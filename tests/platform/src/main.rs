//! `platform-service`: runs any one service by name with that service's own command line,
//! exactly as its `sloop-<name>` binary would (`platform-service auth --listen ...`). The
//! journey tests start it as separate processes; it is built with the tests, so it never
//! runs stale code.

use std::ffi::OsString;

use clap::Parser;

/// Services allocate and free small buffers on every request; mimalloc does that faster
/// than glibc's allocator (measured on the gateway: 1.8x the throughput).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let service = args
        .next()
        .and_then(|s| s.into_string().ok())
        .unwrap_or_default();
    let argv = std::iter::once(OsString::from(format!("sloop-{service}"))).chain(args);
    match service.as_str() {
        "user" => sloop_user::cli::run(sloop_user::cli::Cli::parse_from(argv)).await?,
        "auth" => sloop_auth::cli::run(sloop_auth::cli::Cli::parse_from(argv)).await?,
        "gateway" => sloop_gateway::cli::run(sloop_gateway::cli::Cli::parse_from(argv)).await?,
        "store" => sloop_store::cli::run(sloop_store::cli::Cli::parse_from(argv)).await?,
        "payment" => sloop_payment::cli::run(sloop_payment::cli::Cli::parse_from(argv)).await?,
        "notification" => {
            sloop_notification::cli::run(sloop_notification::cli::Cli::parse_from(argv)).await?
        }
        "audit" => sloop_audit::cli::run(sloop_audit::cli::Cli::parse_from(argv)).await?,
        "batch" => sloop_batch::cli::run(sloop_batch::cli::Cli::parse_from(argv)).await?,
        "chat" => sloop_chat::cli::run(sloop_chat::cli::Cli::parse_from(argv)).await?,
        other => anyhow::bail!(
            "no service `{other}`; use user, auth, gateway, chat, store, payment, notification, \
             audit or batch"
        ),
    }
    Ok(())
}
