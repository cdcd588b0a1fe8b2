//! A circuit breaker per upstream: after a run of failures it opens and fails calls at once
//! instead of letting every request wait for a dead dependency; after a cool-down it lets
//! trial calls through (half-open) and closes again when they succeed.

use std::sync::Mutex;
use std::time::Duration;

use metrics::{counter, gauge};
use tokio::time::Instant;

use telemetry::metrics::{BREAKER_STATE, BREAKER_TRANSITIONS};

/// When a breaker opens and how it recovers.
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failures_to_open: u32,
    /// How long it stays open before letting a trial call through.
    pub open_for: Duration,
    /// Trial calls allowed at once while half-open.
    pub trial_calls: u32,
    /// Successful trial calls that close it again.
    pub successes_to_close: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failures_to_open: 5,
            open_for: Duration::from_secs(5),
            trial_calls: 1,
            successes_to_close: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

/// The state a breaker reports, as the `state` gauge encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// One upstream's breaker. Share it (it is `Sync`) among every caller of that upstream.
#[derive(Debug)]
pub struct CircuitBreaker {
    service: &'static str,
    upstream: String,
    settings: BreakerSettings,
    state: Mutex<State>,
}

/// The breaker is open: do not call; try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub retry_after: Duration,
}

impl CircuitBreaker {
    pub fn new(
        service: &'static str,
        upstream: impl Into<String>,
        settings: BreakerSettings,
    ) -> Self {
        let breaker = Self {
            service,
            upstream: upstream.into(),
            settings,
            state: Mutex::new(State::Closed { failures: 0 }),
        };
        breaker.publish(BreakerState::Closed);
        breaker
    }

    /// Asks to make one call. Report its result with [`Permit::success`] or
    /// [`Permit::failure`]; a permit dropped unreported (the caller gave up) counts as
    /// neither.
    pub fn try_call(&self) -> Result<Permit<'_>, Rejected> {
        let mut state = self.state.lock().expect("breaker lock");
        let now = Instant::now();
        match *state {
            State::Closed { .. } => Ok(Permit::new(self, false)),
            State::Open { until } if now < until => Err(Rejected {
                retry_after: until - now,
            }),
            State::Open { .. } => {
                *state = State::HalfOpen {
                    in_flight: 1,
                    successes: 0,
                };
                drop(state);
                self.transition(BreakerState::HalfOpen);
                Ok(Permit::new(self, true))
            }
            State::HalfOpen {
                in_flight,
                successes,
            } if in_flight < self.settings.trial_calls => {
                *state = State::HalfOpen {
                    in_flight: in_flight + 1,
                    successes,
                };
                Ok(Permit::new(self, true))
            }
            State::HalfOpen { .. } => Err(Rejected {
                retry_after: Duration::from_millis(100),
            }),
        }
    }

    pub fn state(&self) -> BreakerState {
        match *self.state.lock().expect("breaker lock") {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn record(&self, trial: bool, ok: bool) {
        let mut state = self.state.lock().expect("breaker lock");
        let next = match (*state, ok) {
            (State::Closed { .. }, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false)
                if failures + 1 >= self.settings.failures_to_open =>
            {
                self.open_until()
            }
            (State::Closed { failures }, false) => State::Closed {
                failures: failures + 1,
            },
            (
                State::HalfOpen {
                    in_flight,
                    successes,
                },
                true,
            ) if trial => {
                if successes + 1 >= self.settings.successes_to_close {
                    State::Closed { failures: 0 }
                } else {
                    State::HalfOpen {
                        in_flight: in_flight.saturating_sub(1),
                        successes: successes + 1,
                    }
                }
            }
            (State::HalfOpen { .. }, false) if trial => self.open_until(),
            // A call let through before the breaker opened, ending late: ignore it.
            (current, _) => current,
        };
        let changed = std::mem::discriminant(&next) != std::mem::discriminant(&*state);
        *state = next;
        drop(state);
        if changed {
            self.transition(match next {
                State::Closed { .. } => BreakerState::Closed,
                State::Open { .. } => BreakerState::Open,
                State::HalfOpen { .. } => BreakerState::HalfOpen,
            });
        }
    }

    fn release_trial(&self) {
        let mut state = self.state.lock().expect("breaker lock");
        if let State::HalfOpen {
            in_flight,
            successes,
        } = *state
        {
            *state = State::HalfOpen {
                in_flight: in_flight.saturating_sub(1),
                successes,
            };
        }
    }

    fn open_until(&self) -> State {
        State::Open {
            until: Instant::now() + self.settings.open_for,
        }
    }

    fn transition(&self, to: BreakerState) {
        match to {
            BreakerState::Open => {
                tracing::warn!(upstream = %self.upstream, "circuit breaker opened")
            }
            _ => {
                tracing::info!(upstream = %self.upstream, state = to.as_str(), "circuit breaker changed state")
            }
        }
        counter!(BREAKER_TRANSITIONS, "service" => self.service, "upstream" => self.upstream.clone(), "to" => to.as_str())
            .increment(1);
        self.publish(to);
    }

    fn publish(&self, state: BreakerState) {
        gauge!(BREAKER_STATE, "service" => self.service, "upstream" => self.upstream.clone())
            .set(f64::from(state as u8));
    }
}

/// Leave to make one call through a breaker.
#[must_use = "report the call's result with success() or failure()"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    trial: bool,
    reported: bool,
}

impl<'a> Permit<'a> {
    fn new(breaker: &'a CircuitBreaker, trial: bool) -> Self {
        Self {
            breaker,
            trial,
            reported: false,
        }
    }

    pub fn success(mut self) {
        self.reported = true;
        self.breaker.record(self.trial, true);
    }

    pub fn failure(mut self) {
        self.reported = true;
        self.breaker.record(self.trial, false);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported && self.trial {
            self.breaker.release_trial();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(
            "test",
            "up",
            BreakerSettings {
                failures_to_open: 3,
                open_for: Duration::from_secs(5),
                trial_calls: 1,
                successes_to_close: 2,
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_recovers_through_half_open() {
        let b = breaker();
        b.try_call().unwrap().failure();
        b.try_call().unwrap().success();
        for _ in 0..2 {
            b.try_call().unwrap().failure();
        }
        assert_eq!(b.state(), BreakerState::Closed, "a success reset the count");
        b.try_call().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open);
        let rejected = b.try_call().err().unwrap();
        assert_eq!(rejected.retry_after, Duration::from_secs(5));

        tokio::time::advance(Duration::from_secs(5)).await;
        let trial = b.try_call().unwrap();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.try_call().is_err(), "one trial call at a time");
        trial.success();
        b.try_call().unwrap().success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_opens_it_again() {
        let b = breaker();
        for _ in 0..3 {
            b.try_call().unwrap().failure();
        }
        tokio::time::advance(Duration::from_secs(6)).await;
        b.try_call().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.try_call().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_trial_frees_its_slot() {
        let b = breaker();
        for _ in 0..3 {
            b.try_call().unwrap().failure();
        }
        tokio::time::advance(Duration::from_secs(6)).await;
        drop(b.try_call().unwrap());
        assert!(b.try_call().is_ok(), "the dropped trial gave its slot back");
    }
}
