//! The `sloop-auth` command line: the service's flags, and running it from them.

use std::time::Duration;

use crate::AuthSettings;
use crate::keys::KeySettings;
use crate::passwords::HashCost;
use crate::tokens::TokenSettings;
use clap::Parser;
use sloop_kit::{ServiceArgs, StartError};

/// The sloop auth service: registration, login, refresh-token rotation and the JWKS the
/// gateway verifies access tokens with.
///
/// Starts on 127.0.0.1:8081 with a SQLite file in the working directory unless told
/// otherwise; creates profiles in the user service (--upstream user=URL, default
/// http://127.0.0.1:8082) and consumes its events to block suspended users.
#[derive(Debug, Parser)]
#[command(name = "sloop-auth", version)]
pub struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    auth: AuthArgs,
}

#[derive(Debug, clap::Args)]
struct AuthArgs {
    /// `iss` of the tokens, which verifiers check.
    #[arg(long, env = "AUTH_ISSUER", default_value = "sloop-auth")]
    issuer: String,

    /// `aud` of the tokens, which verifiers check.
    #[arg(long, env = "AUTH_AUDIENCE", default_value = "sloop")]
    audience: String,

    /// How long an access token lives.
    #[arg(long, env = "AUTH_ACCESS_TTL", default_value = "15m", value_parser = sloop_duration::parse_positive)]
    access_ttl: Duration,

    /// How long a refresh token lives unless used or revoked.
    #[arg(long, env = "AUTH_REFRESH_TTL", default_value = "30days", value_parser = sloop_duration::parse_positive)]
    refresh_ttl: Duration,

    /// How long a signing key signs before a new one replaces it.
    #[arg(long, env = "AUTH_KEY_ROTATION", default_value = "30days", value_parser = sloop_duration::parse_positive)]
    key_rotation: Duration,

    /// How long a new key is published in the JWKS before it signs; longer than any
    /// verifier caches the JWKS.
    #[arg(long, env = "AUTH_KEY_PUBLISH_AHEAD", default_value = "5m", value_parser = sloop_duration::parse_positive)]
    key_publish_ahead: Duration,

    /// Emails that get the admin role at registration (comma-separated in the env).
    #[arg(long = "admin-email", env = "AUTH_ADMIN_EMAILS", value_delimiter = ',')]
    admin_emails: Vec<String>,

    /// Failed logins per account per --login-failure-window before 429.
    #[arg(long, env = "AUTH_LOGIN_FAILURES_PER_ACCOUNT", default_value_t = 5)]
    login_failures_per_account: u32,

    /// Failed logins per client address per --login-failure-window before 429.
    #[arg(long, env = "AUTH_LOGIN_FAILURES_PER_ADDRESS", default_value_t = 50)]
    login_failures_per_address: u32,

    #[arg(long, env = "AUTH_LOGIN_FAILURE_WINDOW", default_value = "15m", value_parser = sloop_duration::parse_positive)]
    login_failure_window: Duration,

    /// Argon2id memory per hash, KiB (OWASP's minimum is 19456).
    #[arg(long, env = "AUTH_HASH_MEMORY_KIB", default_value_t = HashCost::OWASP.memory_kib)]
    hash_memory_kib: u32,

    /// Argon2id iterations per hash (OWASP's minimum at 19 MiB is 2).
    #[arg(long, env = "AUTH_HASH_ITERATIONS", default_value_t = HashCost::OWASP.iterations)]
    hash_iterations: u32,
}

impl AuthArgs {
    fn settings(self) -> AuthSettings {
        AuthSettings {
            tokens: TokenSettings {
                issuer: self.issuer,
                audience: self.audience,
                access_ttl: self.access_ttl,
                refresh_ttl: self.refresh_ttl,
            },
            keys: KeySettings {
                rotation: self.key_rotation,
                publish_ahead: self.key_publish_ahead,
                token_lifetime: self.access_ttl + Duration::from_secs(60),
            },
            rotation_check: AuthSettings::default().rotation_check,
            refresh_cleanup_every: AuthSettings::default().refresh_cleanup_every,
            hash_cost: HashCost {
                memory_kib: self.hash_memory_kib,
                iterations: self.hash_iterations,
            },
            admin_emails: self
                .admin_emails
                .into_iter()
                .map(|e| e.trim().to_lowercase())
                .collect(),
            failures_per_account: self.login_failures_per_account.max(1),
            failures_per_address: self.login_failures_per_address.max(1),
            failure_window: self.login_failure_window,
        }
    }
}

/// Runs the service until SIGTERM or Ctrl-C.
pub async fn run(cli: Cli) -> Result<(), StartError> {
    sloop_kit::run(crate::service(cli.auth.settings()), cli.service).await
}
