//! The signing keys: Ed25519 (EdDSA), each with a `kid`, kept in auth's database so every
//! instance signs with the same key and a restart logs nobody out.
//!
//! Rotation never breaks a token: a new key is published in the JWKS `publish_ahead` before
//! it signs anything (so verifiers that cache the JWKS have it), and the key it replaces
//! stays published until every token it signed has expired.

use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};
use sloop_kit::Database;
use sloop_kit::clock::now_millis;
use sloop_kit::lease::Lease;
use sqlx::FromRow;
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

/// Why keys could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("key {kid} is stored damaged: {reason}")]
    Damaged { kid: String, reason: String },
    #[error("cannot generate a key: {0}")]
    Generate(String),
    #[error("no signing key is active yet")]
    NoActiveKey,
}

/// When keys change.
#[derive(Debug, Clone, Copy)]
pub struct KeySettings {
    /// A key signs for this long before a newer one replaces it.
    pub rotation: Duration,
    /// A new key is in the JWKS this long before it signs.
    pub publish_ahead: Duration,
    /// The longest-lived token a key signs (the access-token lifetime plus verifiers'
    /// clock leeway): a replaced key stays published this long after its last signature.
    pub token_lifetime: Duration,
}

#[derive(Debug, Clone, FromRow)]
struct Row {
    kid: String,
    private_pkcs8: String,
    public_x: String,
    created_at_ms: i64,
    activates_at_ms: i64,
    retires_at_ms: Option<i64>,
}

/// A signing key ready to use.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub key: EncodingKey,
}

/// The keys of this auth service, cached and kept in step with the database.
pub struct KeyRing {
    db: Database,
    settings: KeySettings,
    cache: RwLock<Cache>,
}

struct Cache {
    rows: Vec<Row>,
    loaded_at_ms: i64,
}

/// How long an instance trusts its cached key list before reading it again (another instance
/// may have rotated).
const CACHE_FOR_MS: i64 = 10_000;

impl KeyRing {
    pub fn new(db: Database, settings: KeySettings) -> Self {
        Self {
            db,
            settings,
            cache: RwLock::new(Cache {
                rows: Vec::new(),
                loaded_at_ms: i64::MIN,
            }),
        }
    }

    pub fn settings(&self) -> KeySettings {
        self.settings
    }

    async fn rows(&self) -> Result<Vec<Row>, KeyError> {
        let now = now_millis();
        {
            let cache = self.cache.read().await;
            if now.saturating_sub(cache.loaded_at_ms) < CACHE_FOR_MS {
                return Ok(cache.rows.clone());
            }
        }
        self.reload().await
    }

    async fn reload(&self) -> Result<Vec<Row>, KeyError> {
        let rows = sqlx::query_as::<_, Row>(
            "SELECT kid, private_pkcs8, public_x, created_at_ms, activates_at_ms, retires_at_ms \
             FROM signing_keys ORDER BY activates_at_ms, created_at_ms",
        )
        .fetch_all(self.db.executor())
        .await?;
        let mut cache = self.cache.write().await;
        cache.rows = rows.clone();
        cache.loaded_at_ms = now_millis();
        Ok(rows)
    }

    /// The key that signs now: the latest one whose activation time has come.
    pub async fn signing_key(&self) -> Result<SigningKey, KeyError> {
        let now = now_millis();
        let rows = self.rows().await?;
        let row = rows
            .iter()
            .rev()
            .find(|r| r.activates_at_ms <= now)
            .ok_or(KeyError::NoActiveKey)?;
        let der = STANDARD
            .decode(&row.private_pkcs8)
            .map_err(|e| KeyError::Damaged {
                kid: row.kid.clone(),
                reason: e.to_string(),
            })?;
        Ok(SigningKey {
            kid: row.kid.clone(),
            key: EncodingKey::from_ed_der(&der),
        })
    }

    /// The JSON Web Key Set verifiers fetch: every key published now.
    pub async fn jwks(&self) -> Result<Value, KeyError> {
        let now = now_millis();
        let keys: Vec<Value> = self
            .rows()
            .await?
            .iter()
            .filter(|r| r.created_at_ms <= now && r.retires_at_ms.is_none_or(|at| at > now))
            .map(|r| {
                json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": r.public_x,
                    "kid": r.kid,
                    "alg": "EdDSA",
                    "use": "sig",
                })
            })
            .collect();
        Ok(json!({ "keys": keys }))
    }

    /// Makes sure some key can sign now (the first start has none).
    pub async fn ensure_active(&self) -> Result<(), KeyError> {
        if self
            .reload()
            .await?
            .iter()
            .any(|r| r.activates_at_ms <= now_millis())
        {
            return Ok(());
        }
        self.add_key(Duration::ZERO).await.map(|_| ())
    }

    /// Starts a rotation: a new key, published now, signing after `publish_ahead`; the
    /// current keys retire once their last tokens expire. Returns the new key's id and when
    /// it starts signing (Unix ms).
    pub async fn rotate(&self) -> Result<(String, i64), KeyError> {
        self.add_key(self.settings.publish_ahead).await
    }

    async fn add_key(&self, ahead: Duration) -> Result<(String, i64), KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| KeyError::Generate(e.to_string()))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let kid = uuid::Uuid::now_v7().simple().to_string();
        let now = now_millis();
        let activates = now + ahead.as_millis() as i64;
        let retire_others = activates + self.settings.token_lifetime.as_millis() as i64;
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, private_pkcs8, public_x, created_at_ms, \
             activates_at_ms, retires_at_ms) VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(&kid)
        .bind(STANDARD.encode(pkcs8.as_ref()))
        .bind(URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()))
        .bind(now)
        .bind(activates)
        .execute(tx.executor())
        .await?;
        sqlx::query(
            "UPDATE signing_keys SET retires_at_ms = $1 WHERE kid <> $2 AND \
             (retires_at_ms IS NULL OR retires_at_ms > $1)",
        )
        .bind(retire_others)
        .bind(&kid)
        .execute(tx.executor())
        .await?;
        tx.commit().await?;
        self.reload().await?;
        tracing::info!(%kid, activates_at_ms = activates, "signing key added");
        Ok((kid, activates))
    }

    /// Rotates when the signing key is older than the rotation period, and forgets keys
    /// retired a day ago. One instance at a time (a lease), every `every`.
    pub async fn keep_rotating(&self, every: Duration, stop: CancellationToken) {
        let holder = format!("auth-{}", uuid::Uuid::new_v4().simple());
        let lease = Lease::new(self.db.clone(), "key-rotation", holder, every * 3);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
            match lease.acquire().await {
                Ok(true) => {
                    if let Err(err) = self.rotate_if_due().await {
                        tracing::error!(error = %err, "key rotation failed");
                    }
                }
                Ok(false) => {}
                Err(err) => tracing::warn!(error = %err, "cannot reach the key-rotation lease"),
            }
        }
        let _ = lease.release().await;
    }

    async fn rotate_if_due(&self) -> Result<(), KeyError> {
        let rows = self.reload().await?;
        let newest = rows.iter().map(|r| r.created_at_ms).max();
        let due =
            newest.is_none_or(|at| now_millis() - at >= self.settings.rotation.as_millis() as i64);
        if due {
            self.rotate().await?;
        }
        let forget_before = now_millis() - 86_400_000;
        sqlx::query("DELETE FROM signing_keys WHERE retires_at_ms < $1")
            .bind(forget_before)
            .execute(self.db.executor())
            .await?;
        Ok(())
    }
}
