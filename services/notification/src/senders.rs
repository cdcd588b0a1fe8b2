//! The simulated email, push and SMS senders: each call takes a latency drawn uniformly
//! from its channel's range and fails with its channel's probability, like a provider's API
//! that is slow and sometimes down. Nothing leaves the process.

use std::time::{Duration, Instant};

use metrics::histogram;

use crate::model::Channel;

/// Time spent "sending", by channel: `notification_delivery_duration_seconds`.
pub const DELIVERY_DURATION: &str = "notification_delivery_duration_seconds";

/// How one channel's simulated provider behaves and how hard the worker tries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelSettings {
    /// Latency of one send, drawn uniformly between these.
    pub latency_min: Duration,
    pub latency_max: Duration,
    /// Probability (0 to 1) that a send fails.
    pub failure_rate: f64,
    /// Attempts in all, the first included, before a delivery is given up as failed.
    pub max_attempts: u32,
}

impl ChannelSettings {
    /// The defaults for `channel`: SMS gateways are the slowest, push the fastest. Nothing
    /// fails by default, so tests are deterministic.
    pub fn default_for(channel: Channel) -> Self {
        let (min, max) = match channel {
            Channel::Email => (20, 80),
            Channel::Push => (5, 30),
            Channel::Sms => (50, 200),
        };
        Self {
            latency_min: Duration::from_millis(min),
            latency_max: Duration::from_millis(max),
            failure_rate: 0.0,
            max_attempts: 5,
        }
    }

    /// Checks the settings make sense; the message names the setting that does not.
    pub fn validate(&self, channel: Channel) -> Result<(), SettingsError> {
        let name = channel.as_str();
        if self.latency_min > self.latency_max {
            return Err(SettingsError(format!(
                "{name}: the minimum latency ({:?}) is above the maximum ({:?})",
                self.latency_min, self.latency_max
            )));
        }
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err(SettingsError(format!(
                "{name}: the failure rate must be between 0 and 1, got {}",
                self.failure_rate
            )));
        }
        if self.max_attempts == 0 {
            return Err(SettingsError(format!(
                "{name}: max attempts must be at least 1"
            )));
        }
        Ok(())
    }

    fn sample_latency(&self) -> Duration {
        if self.latency_max <= self.latency_min {
            return self.latency_min;
        }
        let (min, max) = (
            self.latency_min.as_secs_f64(),
            self.latency_max.as_secs_f64(),
        );
        Duration::from_secs_f64(rand::random_range(min..=max))
    }
}

/// Settings that cannot work, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid notification settings: {0}")]
pub struct SettingsError(pub String);

/// Why a simulated send failed. The same send may work on a later attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("simulated {0} provider failure")]
pub struct SendError(pub &'static str);

/// One channel's simulated provider.
#[derive(Debug, Clone)]
pub struct Sender {
    service: &'static str,
    channel: Channel,
    settings: ChannelSettings,
}

impl Sender {
    pub fn new(service: &'static str, channel: Channel, settings: ChannelSettings) -> Self {
        Self {
            service,
            channel,
            settings,
        }
    }

    pub fn settings(&self) -> &ChannelSettings {
        &self.settings
    }

    /// "Sends" one delivery: waits the simulated latency, then succeeds or fails.
    pub async fn send(&self) -> Result<(), SendError> {
        let started = Instant::now();
        tokio::time::sleep(self.settings.sample_latency()).await;
        let result = if rand::random::<f64>() < self.settings.failure_rate {
            Err(SendError(self.channel.as_str()))
        } else {
            Ok(())
        };
        histogram!(DELIVERY_DURATION, "service" => self.service, "channel" => self.channel.as_str())
            .record(started.elapsed().as_secs_f64());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instant(failure_rate: f64) -> Sender {
        Sender::new(
            "test",
            Channel::Sms,
            ChannelSettings {
                latency_min: Duration::ZERO,
                latency_max: Duration::ZERO,
                failure_rate,
                max_attempts: 1,
            },
        )
    }

    #[tokio::test]
    async fn failure_rates_of_zero_and_one_are_certain() {
        for _ in 0..20 {
            assert!(instant(0.0).send().await.is_ok());
            assert_eq!(instant(1.0).send().await, Err(SendError("sms")));
        }
    }

    #[test]
    fn latency_stays_in_its_range() {
        let settings = ChannelSettings::default_for(Channel::Email);
        for _ in 0..1000 {
            let latency = settings.sample_latency();
            assert!(
                (settings.latency_min..=settings.latency_max).contains(&latency),
                "{latency:?}"
            );
        }
    }

    #[test]
    fn nonsense_settings_are_refused() {
        let base = ChannelSettings::default_for(Channel::Push);
        let bad = ChannelSettings {
            failure_rate: 1.5,
            ..base
        };
        assert!(bad.validate(Channel::Push).unwrap_err().0.contains("push"));
        let bad = ChannelSettings {
            latency_min: Duration::from_secs(1),
            ..base
        };
        assert!(
            bad.validate(Channel::Push)
                .unwrap_err()
                .0
                .contains("minimum")
        );
        let bad = ChannelSettings {
            max_attempts: 0,
            ..base
        };
        assert!(bad.validate(Channel::Push).is_err());
        assert!(base.validate(Channel::Push).is_ok());
    }
}
