//! The simulated payment provider: every call takes a latency drawn from a log-normal
//! distribution (set by its median and 99th percentile) and may be declined or fail
//! transiently at configured rates. Settings change at run time, for experiments.
//!
//! Like a real provider it is idempotent by key: charging the same charge id again returns
//! the first answer instead of charging twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use metrics::{counter, histogram};
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The payment method the provider always declines, like providers' test cards.
pub const DECLINED_TEST_METHOD: &str = "test-decline";

/// The longest a call may take, in milliseconds; well under the charge worker's claim, so a
/// slow call is never taken up a second time while it runs.
pub const MAX_LATENCY_MS: f64 = 10_000.0;

/// How many answers the provider remembers for idempotency before it forgets the oldest half.
const REMEMBERED_ANSWERS: usize = 100_000;

/// How the simulated provider behaves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// Median latency of a call, in milliseconds.
    #[schema(minimum = 0, maximum = 10000)]
    pub latency_p50_ms: f64,
    /// 99th-percentile latency of a call, in milliseconds; at least the median (a smaller
    /// one is refused with 422).
    #[schema(minimum = 0, maximum = 10000)]
    pub latency_p99_ms: f64,
    /// Share of charges declined (0 to 1), e.g. for insufficient funds.
    #[schema(minimum = 0, maximum = 1)]
    pub decline_rate: f64,
    /// Share of calls that fail transiently (0 to 1) and are retried.
    #[schema(minimum = 0, maximum = 1)]
    pub error_rate: f64,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self {
            latency_p50_ms: 20.0,
            latency_p99_ms: 120.0,
            decline_rate: 0.0,
            error_rate: 0.0,
        }
    }
}

impl ProviderSettings {
    /// Checks the settings make sense; the message says which field is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.latency_p50_ms.is_finite()
            && (0.0..=MAX_LATENCY_MS).contains(&self.latency_p50_ms))
        {
            return Err(format!(
                "latency_p50_ms must be 0 to {MAX_LATENCY_MS} milliseconds"
            ));
        }
        if !(self.latency_p99_ms.is_finite() && self.latency_p99_ms >= self.latency_p50_ms) {
            return Err("latency_p99_ms must be at least latency_p50_ms".into());
        }
        if self.latency_p99_ms > MAX_LATENCY_MS {
            return Err(format!(
                "latency_p99_ms must be at most {MAX_LATENCY_MS} (a charge is claimed for longer than any call may take)"
            ));
        }
        for (name, rate) in [
            ("decline_rate", self.decline_rate),
            ("error_rate", self.error_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        Ok(())
    }

    /// A latency drawn from the log-normal distribution these percentiles describe.
    fn sample_latency(&self) -> Duration {
        if self.latency_p50_ms <= 0.0 {
            return Duration::ZERO;
        }
        // z(0.99) = 2.326: the p99 sits that many standard deviations above the median in
        // log space.
        let mu = self.latency_p50_ms.ln();
        let sigma = (self.latency_p99_ms / self.latency_p50_ms).ln() / 2.326;
        let millis = LogNormal::new(mu, sigma.max(0.0))
            .map(|d| d.sample(&mut rand::rng()))
            .unwrap_or(self.latency_p50_ms);
        Duration::from_secs_f64(millis.min(MAX_LATENCY_MS) / 1000.0)
    }
}

/// What the provider said about a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Approved { reference: String },
    Declined { reason: String },
}

/// The provider could not answer; the same call may work later.
#[derive(Debug, Clone, thiserror::Error)]
#[error("payment provider unavailable (simulated transient error)")]
pub struct Unavailable;

/// A handle on the simulated provider. Cheap to clone; clones share settings and memory.
#[derive(Debug, Clone)]
pub struct Provider {
    settings: Arc<RwLock<ProviderSettings>>,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
}

impl Provider {
    pub fn new(settings: ProviderSettings) -> Self {
        Self {
            settings: Arc::new(RwLock::new(settings)),
            answers: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn settings(&self) -> ProviderSettings {
        *self.settings.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_settings(&self, settings: ProviderSettings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
    }

    /// Charges `amount` to `method` under idempotency key `key`.
    pub async fn charge(&self, key: &str, method: &str) -> Result<Answer, Unavailable> {
        let settings = self.settings();
        let started = Instant::now();
        tokio::time::sleep(settings.sample_latency()).await;
        let result = self.decide(key, method, &settings);
        let outcome = match &result {
            Ok(Answer::Approved { .. }) => "approved",
            Ok(Answer::Declined { .. }) => "declined",
            Err(_) => "error",
        };
        counter!(crate::metrics::PROVIDER_REQUESTS, "service" => crate::NAME, "operation" => "charge", "outcome" => outcome).increment(1);
        histogram!(crate::metrics::PROVIDER_DURATION, "service" => crate::NAME, "operation" => "charge")
            .record(started.elapsed().as_secs_f64());
        result
    }

    fn decide(
        &self,
        key: &str,
        method: &str,
        settings: &ProviderSettings,
    ) -> Result<Answer, Unavailable> {
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(answer) = answers.get(key) {
            return Ok(answer.clone());
        }
        if rand::random::<f64>() < settings.error_rate {
            return Err(Unavailable);
        }
        let answer = if method == DECLINED_TEST_METHOD {
            Answer::Declined {
                reason: "card declined (test card)".into(),
            }
        } else if rand::random::<f64>() < settings.decline_rate {
            Answer::Declined {
                reason: "insufficient funds".into(),
            }
        } else {
            Answer::Approved {
                reference: format!("sim_{}", uuid::Uuid::new_v4().simple()),
            }
        };
        if answers.len() >= REMEMBERED_ANSWERS {
            let forget: Vec<String> = answers
                .keys()
                .take(REMEMBERED_ANSWERS / 2)
                .cloned()
                .collect();
            for key in forget {
                answers.remove(&key);
            }
        }
        answers.insert(key.to_owned(), answer.clone());
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instant(decline_rate: f64, error_rate: f64) -> Provider {
        Provider::new(ProviderSettings {
            latency_p50_ms: 0.0,
            latency_p99_ms: 0.0,
            decline_rate,
            error_rate,
        })
    }

    #[tokio::test]
    async fn the_same_key_gets_the_same_answer() {
        let provider = instant(0.5, 0.0);
        for key in 0..50 {
            let key = format!("charge-{key}");
            let first = provider.charge(&key, "card").await.unwrap();
            assert_eq!(provider.charge(&key, "card").await.unwrap(), first);
        }
    }

    #[tokio::test]
    async fn the_test_card_is_always_declined_and_rates_apply() {
        let provider = instant(0.0, 0.0);
        let answer = provider.charge("a", DECLINED_TEST_METHOD).await.unwrap();
        assert!(matches!(answer, Answer::Declined { .. }), "{answer:?}");
        assert!(matches!(
            provider.charge("b", "card").await.unwrap(),
            Answer::Approved { .. }
        ));
        provider.set_settings(ProviderSettings {
            error_rate: 1.0,
            ..provider.settings()
        });
        assert!(provider.charge("c", "card").await.is_err());
    }

    #[test]
    fn latency_follows_the_percentiles() {
        let settings = ProviderSettings {
            latency_p50_ms: 10.0,
            latency_p99_ms: 100.0,
            ..ProviderSettings::default()
        };
        let mut samples: Vec<f64> = (0..20_000)
            .map(|_| settings.sample_latency().as_secs_f64() * 1000.0)
            .collect();
        samples.sort_by(f64::total_cmp);
        let p50 = samples[10_000];
        let p99 = samples[19_800];
        assert!((8.0..12.5).contains(&p50), "p50 {p50}");
        assert!((75.0..130.0).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn nonsense_settings_are_refused() {
        let bad = ProviderSettings {
            decline_rate: 1.5,
            ..ProviderSettings::default()
        };
        assert!(bad.validate().unwrap_err().contains("decline_rate"));
        let bad = ProviderSettings {
            latency_p99_ms: 1.0,
            ..ProviderSettings::default()
        };
        assert!(bad.validate().unwrap_err().contains("latency_p99_ms"));
    }
}
