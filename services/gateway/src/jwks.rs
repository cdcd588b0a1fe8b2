//! Verifying access tokens locally: EdDSA signatures checked against auth's JWKS, which is
//! cached and fetched again when a token names a key the cache does not have (auth rotated).
//! Refetches are single-flight and spaced out, so tokens with made-up key ids cannot make
//! the gateway hammer auth.

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

use crate::config::JwtConfig;

/// How often an unknown `kid` may trigger a refetch.
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(5);

/// The caller a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub roles: Vec<String>,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The token is bad: 401.
    #[error("{0}")]
    Invalid(&'static str),
    /// The gateway cannot check tokens right now (no keys could be fetched): 503.
    #[error("cannot fetch the keys that verify tokens: {0}")]
    Unavailable(String),
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// Keys by `kid`, and the token rules.
pub struct Verifier {
    jwks_url: String,
    client: reqwest::Client,
    validation: Validation,
    keys: RwLock<HashMap<String, DecodingKey>>,
    /// When the last fetch was tried, and whether any fetch ever worked.
    fetches: Mutex<Fetches>,
}

#[derive(Default)]
struct Fetches {
    last_attempt: Option<Instant>,
    ever_loaded: bool,
}

impl Verifier {
    pub fn new(config: &JwtConfig) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.leeway = config.leeway_seconds;
        validation.validate_nbf = true;
        Self {
            jwks_url: config.jwks_url.clone(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("a client with a time-out builds"),
            validation,
            keys: RwLock::new(HashMap::new()),
            fetches: Mutex::new(Fetches::default()),
        }
    }

    /// Checks `token` and says whose it is.
    pub async fn verify(&self, token: &str) -> Result<Identity, VerifyError> {
        // Header first: `alg: none` and unknown algorithms fail to parse, HS256 is refused
        // by name, before any key is looked at.
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            VerifyError::Invalid("the token is malformed or names an unknown algorithm")
        })?;
        if header.alg != Algorithm::EdDSA {
            return Err(VerifyError::Invalid(
                "only EdDSA-signed tokens are accepted",
            ));
        }
        let kid = header
            .kid
            .ok_or(VerifyError::Invalid("the token names no signing key (kid)"))?;
        let key = match self.key(&kid).await {
            Some(key) => key,
            None => {
                self.refetch().await?;
                self.key(&kid).await.ok_or(VerifyError::Invalid(
                    "the token was signed by an unknown key",
                ))?
            }
        };
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(|e| {
            VerifyError::Invalid(match e.kind() {
                ErrorKind::ExpiredSignature => "the token expired; refresh it",
                ErrorKind::ImmatureSignature => "the token is not valid yet",
                ErrorKind::InvalidSignature => "the token's signature does not verify",
                ErrorKind::InvalidIssuer => "the token is from another issuer",
                ErrorKind::InvalidAudience => "the token is for another audience",
                ErrorKind::InvalidAlgorithm => "the token's algorithm does not fit its key",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
                _ => "the token is malformed",
            })
        })?;
        Ok(Identity {
            user_id: data.claims.sub,
            roles: data.claims.roles,
        })
    }

    async fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().await.get(kid).cloned()
    }

    /// Fetches the JWKS unless another caller just did (or is doing it now).
    async fn refetch(&self) -> Result<(), VerifyError> {
        let mut fetches = self.fetches.lock().await;
        let recent = fetches
            .last_attempt
            .is_some_and(|at| at.elapsed() < REFETCH_AT_MOST_EVERY);
        if recent && fetches.ever_loaded {
            return Ok(());
        }
        fetches.last_attempt = Some(Instant::now());
        match self.fetch().await {
            Ok(()) => {
                fetches.ever_loaded = true;
                Ok(())
            }
            // With keys cached, a failed refetch only means this kid stays unknown.
            Err(_) if fetches.ever_loaded => Ok(()),
            Err(reason) => Err(VerifyError::Unavailable(reason)),
        }
    }

    /// Fetches the JWKS now and replaces the cache.
    pub async fn fetch(&self) -> Result<(), String> {
        let set: JwkSet = self
            .client
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("{}: {e}", self.jwks_url))?
            .json()
            .await
            .map_err(|e| format!("{} is not a JWKS: {e}", self.jwks_url))?;
        let keys: HashMap<String, DecodingKey> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
            })
            .collect();
        tracing::debug!(keys = keys.len(), "JWKS fetched");
        *self.keys.write().await = keys;
        Ok(())
    }

    /// Keeps the cache fresh every `every` until `stop`.
    pub async fn keep_fresh(&self, every: Duration, stop: tokio_util::sync::CancellationToken) {
        loop {
            match self.fetch().await {
                Ok(()) => self.fetches.lock().await.ever_loaded = true,
                Err(reason) => tracing::warn!(%reason, "cannot refresh the JWKS"),
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}
