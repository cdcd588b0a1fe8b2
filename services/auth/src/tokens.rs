//! The tokens auth hands out: a short-lived access JWT (EdDSA, with the key's `kid`) that
//! the gateway verifies on its own, and an opaque refresh token stored only as a hash.

use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::SigningKey;

/// The claims of an access token. `sub` is the user id; `roles` decide what the gateway
/// lets through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub email: String,
    pub roles: Vec<String>,
}

/// Who signs and for whom, and for how long tokens live.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

/// Signs an access token for `user_id`; returns it and its expiry (Unix seconds).
pub fn access_token(
    key: &SigningKey,
    settings: &TokenSettings,
    user_id: &str,
    email: &str,
    roles: &[String],
    now_ms: i64,
) -> Result<(String, i64), jsonwebtoken::errors::Error> {
    let now = now_ms / 1000;
    let exp = now + settings.access_ttl.as_secs() as i64;
    let claims = Claims {
        iss: settings.issuer.clone(),
        sub: user_id.to_owned(),
        aud: settings.audience.clone(),
        exp,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::new_v4().to_string(),
        email: email.to_owned(),
        roles: roles.to_vec(),
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &claims, &key.key).map(|token| (token, exp))
}

/// A new refresh token: 256 random bits, URL-safe. Returns the token and its hash.
pub fn new_refresh_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_refresh_token(&token);
    (token, hash)
}

/// What is stored of a refresh token: its SHA-256, hex. A database leak yields no usable
/// token.
pub fn hash_refresh_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_random_and_stored_hashed() {
        let (one, hash) = new_refresh_token();
        let (two, _) = new_refresh_token();
        assert_ne!(one, two);
        assert_eq!(one.len(), 43);
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, hash_refresh_token(&one));
        assert_ne!(hash, one);
    }
}
