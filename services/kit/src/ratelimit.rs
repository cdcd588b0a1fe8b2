//! Token buckets per key (a client, an account, an address): `burst` tokens, refilled at
//! `rate` per second. The gateway limits requests with it; auth limits failed logins.
//! Time is tokio's clock, so tests can pause and advance it.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A bucket's size and refill rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    /// Tokens per second.
    pub rate: f64,
    /// Most tokens a bucket holds: how many calls may come at once after a quiet spell.
    pub burst: f64,
}

impl Quota {
    /// `count` calls per `window`, all of which may come at once.
    pub fn per(count: u32, window: Duration) -> Self {
        Self {
            rate: f64::from(count) / window.as_secs_f64(),
            burst: f64::from(count),
        }
    }

    /// Time for an empty bucket to fill up again.
    pub fn window(&self) -> Duration {
        Duration::from_secs_f64(self.burst / self.rate)
    }
}

/// What a limiter said.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Go ahead; `remaining` whole tokens are left.
    Allowed { remaining: u32 },
    /// Over the limit; a token is back after `retry_after`.
    Limited { retry_after: Duration },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    /// `Retry-After` in whole seconds, never 0 (a client told 0 retries at once).
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Decision::Allowed { .. } => 0,
            Decision::Limited { retry_after } => retry_after.as_secs_f64().ceil().max(1.0) as u64,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Shards, so concurrent requests for different keys rarely wait on one lock.
const SHARDS: usize = 16;

/// Token buckets keyed by `K`.
#[derive(Debug)]
pub struct RateLimiter<K> {
    quota: Quota,
    shards: Vec<Mutex<Shard<K>>>,
}

#[derive(Debug)]
struct Shard<K> {
    buckets: HashMap<K, Bucket>,
    last_sweep: Instant,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(quota: Quota) -> Self {
        let now = Instant::now();
        Self {
            quota,
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        buckets: HashMap::new(),
                        last_sweep: now,
                    })
                })
                .collect(),
        }
    }

    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Takes one token for `key` if there is one.
    pub fn acquire(&self, key: &K) -> Decision {
        self.apply(key, 1.0)
    }

    /// Whether `key` has a token, without taking it.
    pub fn check(&self, key: &K) -> Decision {
        self.apply(key, 0.0)
    }

    fn apply(&self, key: &K, cost: f64) -> Decision {
        let now = Instant::now();
        let mut shard = self.shards[shard_of(key)]
            .lock()
            .expect("rate limiter lock");
        shard.sweep(now, self.quota);
        let quota = self.quota;
        let bucket = shard.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: quota.burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * quota.rate).min(quota.burst);
        bucket.updated = now;
        let needed = cost.max(1.0);
        if bucket.tokens >= needed {
            bucket.tokens -= cost;
            Decision::Allowed {
                remaining: bucket.tokens.floor() as u32,
            }
        } else {
            Decision::Limited {
                retry_after: Duration::from_secs_f64((needed - bucket.tokens) / quota.rate),
            }
        }
    }

    /// Forgets every bucket that refilled completely. Each shard also does this by itself
    /// once per refill window when used.
    pub fn sweep(&self) {
        let now = Instant::now();
        for shard in &self.shards {
            let mut shard = shard.lock().expect("rate limiter lock");
            shard.last_sweep = now - self.quota.window().max(Duration::from_secs(1));
            shard.sweep(now, self.quota);
        }
    }

    /// Keys tracked now.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("rate limiter lock").buckets.len())
            .sum()
    }
}

impl<K: Hash + Eq> Shard<K> {
    /// Forgets buckets that have refilled completely: they are the same as new ones, and
    /// keeping them would let the map grow with every client ever seen.
    fn sweep(&mut self, now: Instant, quota: Quota) {
        if now.duration_since(self.last_sweep) < quota.window().max(Duration::from_secs(1)) {
            return;
        }
        self.last_sweep = now;
        self.buckets.retain(|_, bucket| {
            let elapsed = now.duration_since(bucket.updated).as_secs_f64();
            bucket.tokens + elapsed * quota.rate < quota.burst
        });
    }
}

fn shard_of<K: Hash>(key: &K) -> usize {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() as usize) % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_refill_rate() {
        let limiter = RateLimiter::new(Quota {
            rate: 2.0,
            burst: 3.0,
        });
        for left in [2, 1, 0] {
            assert_eq!(limiter.acquire(&"a"), Decision::Allowed { remaining: left });
        }
        let limited = limiter.acquire(&"a");
        assert_eq!(
            limited,
            Decision::Limited {
                retry_after: Duration::from_millis(500)
            }
        );
        assert_eq!(limited.retry_after_secs(), 1, "sub-second waits round up");
        assert!(limiter.acquire(&"b").is_allowed(), "keys are independent");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(limiter.acquire(&"a").is_allowed());
        assert!(!limiter.acquire(&"a").is_allowed());
    }

    #[tokio::test(start_paused = true)]
    async fn check_does_not_spend_and_full_buckets_are_forgotten() {
        let limiter = RateLimiter::new(Quota::per(2, Duration::from_secs(10)));
        limiter.acquire(&1);
        limiter.acquire(&1);
        assert!(!limiter.check(&1).is_allowed());
        assert!(!limiter.check(&1).is_allowed(), "checking spent nothing");
        assert_eq!(limiter.tracked(), 1);
        limiter.acquire(&2);
        tokio::time::advance(Duration::from_secs(6)).await;
        limiter.sweep();
        assert_eq!(
            limiter.tracked(),
            1,
            "key 2 refilled and was forgotten, key 1 not yet"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        limiter.sweep();
        assert_eq!(limiter.tracked(), 0);
    }
}
