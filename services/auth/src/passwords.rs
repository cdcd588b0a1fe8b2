//! Passwords, hashed with Argon2id. Hashing is slow and memory-hungry on purpose, so it runs
//! on the blocking pool with a cap on how many run at once (each takes `memory_kib`).

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// Shortest and longest password accepted, in characters. No composition rules: length is
/// what makes a password hard to guess (NIST SP 800-63B, OWASP).
pub const MIN_PASSWORD: usize = 10;
pub const MAX_PASSWORD: usize = 128;

/// The cost of one hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl HashCost {
    /// OWASP's minimum for Argon2id: 19 MiB, 2 iterations, parallelism 1.
    pub const OWASP: Self = Self {
        memory_kib: Params::DEFAULT_M_COST,
        iterations: Params::DEFAULT_T_COST,
    };
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("argon2: {0}")]
    Hash(String),
    #[error("the hashing task failed: {0}")]
    Task(String),
}

/// Hashes and verifies passwords.
#[derive(Clone)]
pub struct Passwords {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// A real hash of nothing anyone knows, verified when an email is unknown so that a
    /// wrong email takes as long as a wrong password (no account enumeration by timing).
    decoy: Arc<String>,
}

impl Passwords {
    pub fn new(cost: HashCost) -> Result<Self, PasswordError> {
        let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
            .map_err(|e| PasswordError::Hash(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let decoy = argon2
            .hash_password(uuid::Uuid::new_v4().as_bytes())
            .map_err(|e| PasswordError::Hash(e.to_string()))?
            .to_string();
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            argon2,
            permits: Arc::new(Semaphore::new(parallel)),
            decoy: Arc::new(decoy),
        })
    }

    /// The PHC string (`$argon2id$v=19$m=...`) of `password`, with a random salt.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let (argon2, password) = (self.argon2.clone(), password.to_owned());
        self.blocking(move || {
            argon2
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| PasswordError::Hash(e.to_string()))
        })
        .await
    }

    /// Whether `password` matches `stored` (a PHC string). With no stored hash it still does
    /// the work, and answers false.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<bool, PasswordError> {
        let real = stored.is_some();
        let hash = stored.map_or_else(|| self.decoy.as_str().to_owned(), str::to_owned);
        let (argon2, password) = (self.argon2.clone(), password.to_owned());
        // The parameters come from the stored hash, so raising the cost later still
        // verifies old hashes.
        let matched = self
            .blocking(move || {
                Ok(argon2
                    .verify_password(password.as_bytes(), hash.as_str())
                    .is_ok())
            })
            .await?;
        Ok(real && matched)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| PasswordError::Task(e.to_string()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| PasswordError::Task(e.to_string()))?
    }
}

/// Says what is wrong with a new password, if anything.
pub fn check_new(password: &str, email: &str) -> Result<(), String> {
    let length = password.chars().count();
    if length < MIN_PASSWORD {
        return Err(format!(
            "the password must have at least {MIN_PASSWORD} characters"
        ));
    }
    if length > MAX_PASSWORD {
        return Err(format!(
            "the password must have at most {MAX_PASSWORD} characters"
        ));
    }
    if password.trim().eq_ignore_ascii_case(email.trim()) {
        return Err("the password must not be the email address".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashCost = HashCost {
        memory_kib: 1024,
        iterations: 1,
    };

    #[tokio::test]
    async fn hashes_verify_and_differ_by_salt() {
        let passwords = Passwords::new(CHEAP).unwrap();
        let one = passwords.hash("correct horse battery").await.unwrap();
        let two = passwords.hash("correct horse battery").await.unwrap();
        assert!(one.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{one}");
        assert_ne!(one, two, "a fresh salt each time");
        assert!(
            passwords
                .verify("correct horse battery", Some(&one))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("correct horse battery!", Some(&one))
                .await
                .unwrap()
        );
        assert!(!passwords.verify("anything", None).await.unwrap());
        // Parameters come from the hash: a stronger hasher still verifies old hashes.
        let stronger = Passwords::new(HashCost {
            memory_kib: 2048,
            iterations: 2,
        })
        .unwrap();
        assert!(
            stronger
                .verify("correct horse battery", Some(&one))
                .await
                .unwrap()
        );
    }

    #[test]
    fn new_passwords_are_long_enough_and_not_the_email() {
        assert!(
            check_new("short", "a@b.io")
                .unwrap_err()
                .contains("at least 10")
        );
        assert!(check_new(&"x".repeat(129), "a@b.io").is_err());
        assert!(check_new("Ada@Example.io", "ada@example.io").is_err());
        assert!(check_new("a long enough passphrase", "a@b.io").is_ok());
    }
}
