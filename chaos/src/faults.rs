//! The active faults of one service: applied, listed, deleted and cleared through the admin
//! API, expired by their TTL, capped in number, and consulted on every request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use metrics::{counter, gauge};
use rand::Rng;
// Tokio's clock, so tests can move time forward instead of sleeping.
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::ChaosError;
use crate::rule::{Action, RequestInfo, Rule, Target};

/// Active rules at most, by default: enough for an experiment, few enough that a forgotten
/// script cannot pile them up.
pub const DEFAULT_CAP: usize = 16;

const INJECTED: &str = "chaos_faults_injected_total";
const ACTIVE: &str = "chaos_faults_active";

/// The faults of one service. Cheap to clone; clones share the rules.
#[derive(Clone)]
pub struct Faults {
    service: &'static str,
    cap: usize,
    inner: Arc<Inner>,
}

struct Inner {
    rules: RwLock<Vec<Active>>,
    next_id: AtomicU64,
}

struct Active {
    id: String,
    rule: Rule,
    applied_at: SystemTime,
    expires: Instant,
    injected: Arc<AtomicU64>,
    /// Cancelled when the rule goes (deleted, cleared, expired): hangs it holds end then.
    gone: CancellationToken,
}

impl Active {
    fn remove(&self) {
        self.gone.cancel();
    }
}

/// A rule as listed: what it is, and how much longer it lives.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Fault {
    pub id: String,
    pub service: String,
    pub rule: Rule,
    /// RFC 3339.
    pub applied_at: String,
    pub expires_in_ms: u64,
    /// Requests it has hit so far.
    pub injected: u64,
}

/// What to do to one request, decided once before the service sees it.
#[derive(Debug, Clone)]
pub enum Injection {
    /// Hold it this long, then pass it on.
    Delay { rule: String, by: Duration },
    /// Answer in place of the service.
    Abort {
        rule: String,
        status: u16,
        detail: Option<String>,
    },
    /// Drop the connection.
    Reset { rule: String },
    /// Hold it for at most this long, or until the rule goes (`released`), then drop the
    /// connection.
    Hang {
        rule: String,
        at_most: Duration,
        released: CancellationToken,
    },
}

impl Injection {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Delay { .. } => "delay",
            Self::Abort { .. } => "abort",
            Self::Reset { .. } => "reset",
            Self::Hang { .. } => "hang",
        }
    }

    pub fn rule(&self) -> &str {
        match self {
            Self::Delay { rule, .. }
            | Self::Abort { rule, .. }
            | Self::Reset { rule }
            | Self::Hang { rule, .. } => rule,
        }
    }
}

impl Faults {
    pub fn new(service: &'static str, cap: usize) -> Self {
        gauge!(ACTIVE, "service" => service).set(0.0);
        Self {
            service,
            cap,
            inner: Arc::new(Inner {
                rules: RwLock::new(Vec::new()),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Adds `rule` if it is valid and the cap allows; returns it as listed.
    pub fn apply(&self, rule: Rule) -> Result<Fault, ChaosError> {
        rule.check(self.service).map_err(ChaosError::InvalidRule)?;
        let now = Instant::now();
        let mut rules = self.inner.rules.write().expect("faults lock");
        drop_expired(&mut rules, now);
        if rules.len() >= self.cap {
            return Err(ChaosError::CapReached { cap: self.cap });
        }
        let id = format!(
            "{}-{}",
            self.service,
            self.inner.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let active = Active {
            id,
            expires: now + rule.ttl,
            rule,
            applied_at: SystemTime::now(),
            injected: Arc::default(),
            gone: CancellationToken::new(),
        };
        let listed = self.listed(&active, now);
        tracing::warn!(fault = %listed.id, action = active.rule.action.kind(), ttl = ?active.rule.ttl, "chaos fault applied");
        rules.push(active);
        self.set_gauge(rules.len());
        Ok(listed)
    }

    /// The rules still alive, oldest first.
    pub fn list(&self) -> Vec<Fault> {
        let now = Instant::now();
        let rules = self.inner.rules.read().expect("faults lock");
        rules
            .iter()
            .filter(|a| a.expires > now)
            .map(|a| self.listed(a, now))
            .collect()
    }

    /// Removes one rule; false if there was none by that id (or it had expired).
    pub fn delete(&self, id: &str) -> bool {
        let now = Instant::now();
        let mut rules = self.inner.rules.write().expect("faults lock");
        let found = rules.iter().any(|a| a.id == id && a.expires > now);
        remove_where(&mut rules, |a| a.id == id || a.expires <= now);
        self.set_gauge(rules.len());
        found
    }

    /// Removes every rule; returns how many were alive.
    pub fn clear(&self) -> usize {
        let now = Instant::now();
        let mut rules = self.inner.rules.write().expect("faults lock");
        let alive = rules.iter().filter(|a| a.expires > now).count();
        rules.drain(..).for_each(|a| a.remove());
        self.set_gauge(0);
        if alive > 0 {
            tracing::warn!(cleared = alive, "chaos faults cleared");
        }
        alive
    }

    /// Drops expired rules, so the gauge follows TTLs even when no request comes.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut rules = self.inner.rules.write().expect("faults lock");
        drop_expired(&mut rules, now);
        self.set_gauge(rules.len());
    }

    /// Sweeps every second until `stop`, then clears everything: a service shutting down
    /// leaves no fault behind.
    pub async fn run_sweeper(self, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => self.sweep(),
                () = stop.cancelled() => break,
            }
        }
        self.clear();
    }

    /// Rolls every matching rule's dice for `request`. A terminal fault (abort, reset,
    /// hang) wins over delays, which then do not happen; otherwise the delays that hit add
    /// up. Counts the injection.
    pub fn decide(&self, request: &RequestInfo<'_>, rng: &mut impl Rng) -> Option<Injection> {
        self.decide_for(
            Target::Http,
            request.route,
            |rule| rule.matches(request),
            rng,
        )
    }

    /// The same for one call to a dependency (`target` other than HTTP): what to do to
    /// this database connection, this publish, this event handled. `label` names it in the
    /// injection counter's `route` label (`database`, or the topic).
    pub fn decide_dependency(
        &self,
        target: Target,
        label: &str,
        rng: &mut impl Rng,
    ) -> Option<Injection> {
        self.decide_for(target, label, |_| true, rng)
    }

    /// Applies the dependency faults to one call: sleeps out a delay, and answers `Err` with
    /// what to report for an abort. The caller turns that into its own kind of failure.
    pub async fn inject_dependency(&self, target: Target, label: &str) -> Result<(), String> {
        let injection = self.decide_dependency(target, label, &mut rand::rng());
        if let Some(injection) = &injection {
            // On the span in hand: the request's for a query, the send's, the process's.
            tracing::warn!(
                chaos.fault = injection.kind(),
                chaos.rule = injection.rule(),
                chaos.target = target.as_str(),
                "chaos fault injected"
            );
        }
        match injection {
            None => Ok(()),
            Some(Injection::Delay { by, .. }) => {
                tokio::time::sleep(by).await;
                Ok(())
            }
            Some(Injection::Abort { rule, detail, .. }) => Err(detail.unwrap_or_else(|| {
                format!(
                    "chaos: {} failure injected by fault {rule}",
                    target.as_str()
                )
            })),
            Some(other) => Err(format!(
                "chaos: {} fault {} cannot apply here",
                other.kind(),
                other.rule()
            )),
        }
    }

    fn decide_for(
        &self,
        target: Target,
        label: &str,
        matches: impl Fn(&Rule) -> bool,
        rng: &mut impl Rng,
    ) -> Option<Injection> {
        let now = Instant::now();
        let rules = self.inner.rules.read().expect("faults lock");
        if rules.is_empty() {
            return None;
        }
        let mut delay: Option<(String, Duration)> = None;
        // Counted only if no terminal fault wins: a delay that did not happen struck nothing.
        let mut delays_hit = Vec::new();
        let mut terminal = None;
        for active in rules.iter().filter(|a| a.expires > now) {
            if active.rule.target != target
                || !matches(&active.rule)
                || !hits(active.rule.probability, rng)
            {
                continue;
            }
            let rule = active.id.clone();
            match &active.rule.action {
                Action::Delay(d) => {
                    let by = d.sample(rng);
                    delay = Some(match delay {
                        None => (rule, by),
                        Some((first, sum)) => (first, sum + by),
                    });
                    delays_hit.push(active);
                }
                Action::Abort(abort) if terminal.is_none() => {
                    terminal = Some((
                        active,
                        Injection::Abort {
                            rule,
                            status: abort.status,
                            detail: abort.detail.clone(),
                        },
                    ))
                }
                Action::Reset if terminal.is_none() => {
                    terminal = Some((active, Injection::Reset { rule }))
                }
                Action::Hang if terminal.is_none() => {
                    let at_most = active.expires.saturating_duration_since(now);
                    let released = active.gone.clone();
                    terminal = Some((
                        active,
                        Injection::Hang {
                            rule,
                            at_most,
                            released,
                        },
                    ))
                }
                _ => {}
            }
        }
        let injection = match terminal {
            Some((active, injection)) => {
                active.injected.fetch_add(1, Ordering::Relaxed);
                injection
            }
            None => {
                let (rule, by) = delay?;
                for active in delays_hit {
                    active.injected.fetch_add(1, Ordering::Relaxed);
                }
                Injection::Delay { rule, by }
            }
        };
        counter!(INJECTED, "service" => self.service, "fault" => injection.kind(), "route" => label.to_owned())
            .increment(1);
        Some(injection)
    }

    fn listed(&self, active: &Active, now: Instant) -> Fault {
        Fault {
            id: active.id.clone(),
            service: self.service.to_owned(),
            rule: active.rule.clone(),
            applied_at: humantime::format_rfc3339_millis(active.applied_at).to_string(),
            expires_in_ms: active.expires.saturating_duration_since(now).as_millis() as u64,
            injected: active.injected.load(Ordering::Relaxed),
        }
    }

    fn set_gauge(&self, active: usize) {
        gauge!(ACTIVE, "service" => self.service).set(active as f64);
    }
}

/// Drops the rules whose TTL has passed, releasing what they hold.
fn drop_expired(rules: &mut Vec<Active>, now: Instant) {
    remove_where(rules, |a| a.expires <= now);
}

/// Drops the rules `gone` picks, releasing what they hold.
fn remove_where(rules: &mut Vec<Active>, gone: impl Fn(&Active) -> bool) {
    rules.retain(|a| {
        let gone = gone(a);
        if gone {
            a.remove();
        }
        !gone
    });
}

fn hits(probability: f64, rng: &mut impl Rng) -> bool {
    probability >= 1.0 || rng.random::<f64>() < probability
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn rule(json: serde_json::Value) -> Rule {
        serde_json::from_value(json).expect("a valid rule")
    }

    fn get<'a>(route: &'a str, headers: &'a http::HeaderMap) -> RequestInfo<'a> {
        RequestInfo {
            method: "GET",
            route,
            headers,
        }
    }

    #[test]
    fn nothing_applied_means_nothing_injected() {
        let faults = Faults::new("user", DEFAULT_CAP);
        let headers = http::HeaderMap::new();
        assert!(
            faults
                .decide(&get("/users", &headers), &mut rand::rng())
                .is_none()
        );
    }

    #[test]
    fn abort_short_circuits_delay() {
        let faults = Faults::new("user", DEFAULT_CAP);
        faults
            .apply(rule(
                serde_json::json!({"action": {"delay": {"fixed": "1s"}}}),
            ))
            .unwrap();
        let abort = faults
            .apply(rule(
                serde_json::json!({"action": {"abort": {"status": 503}}}),
            ))
            .unwrap();
        let headers = http::HeaderMap::new();
        let injection = faults.decide(&get("/users", &headers), &mut rand::rng());
        assert!(
            matches!(
                &injection,
                Some(Injection::Abort { rule, status: 503, detail: None }) if *rule == abort.id
            ),
            "{injection:?}"
        );
        // The delay did not happen, so it struck nothing.
        let listed = faults.list();
        assert_eq!((listed[0].injected, listed[1].injected), (0, 1));
    }

    #[test]
    fn a_hang_is_released_when_its_rule_goes() {
        let faults = Faults::new("user", DEFAULT_CAP);
        let hang = faults
            .apply(rule(serde_json::json!({"action": "hang"})))
            .unwrap();
        let headers = http::HeaderMap::new();
        let Some(Injection::Hang { released, .. }) =
            faults.decide(&get("/users", &headers), &mut rand::rng())
        else {
            panic!("expected a hang");
        };
        assert!(!released.is_cancelled());
        assert!(faults.delete(&hang.id));
        assert!(released.is_cancelled());
    }

    #[test]
    fn delays_that_hit_add_up() {
        let faults = Faults::new("user", DEFAULT_CAP);
        for ms in ["100ms", "250ms"] {
            faults
                .apply(rule(
                    serde_json::json!({"action": {"delay": {"fixed": ms}}}),
                ))
                .unwrap();
        }
        let headers = http::HeaderMap::new();
        match faults.decide(&get("/users", &headers), &mut rand::rng()) {
            Some(Injection::Delay { by, .. }) => assert_eq!(by, Duration::from_millis(350)),
            other => panic!("expected a delay, got {other:?}"),
        }
    }

    #[test]
    fn probability_hits_about_that_share_of_requests() {
        let faults = Faults::new("user", DEFAULT_CAP);
        faults
            .apply(rule(
                serde_json::json!({"action": "reset", "probability": 0.3}),
            ))
            .unwrap();
        let headers = http::HeaderMap::new();
        let mut rng = StdRng::seed_from_u64(42);
        let n = 20_000;
        let hit = (0..n)
            .filter(|_| faults.decide(&get("/users", &headers), &mut rng).is_some())
            .count();
        // 0.3 ± 4.5 standard deviations of a binomial share over 20 000 draws.
        let share = hit as f64 / n as f64;
        let sd = (0.3f64 * 0.7 / n as f64).sqrt();
        assert!((share - 0.3).abs() < 4.5 * sd, "share {share}");
        assert_eq!(faults.list()[0].injected, hit as u64);
    }

    #[tokio::test(start_paused = true)]
    async fn rules_expire_with_their_ttl() {
        let faults = Faults::new("user", DEFAULT_CAP);
        faults
            .apply(rule(serde_json::json!({"action": "reset", "ttl": "2s"})))
            .unwrap();
        let headers = http::HeaderMap::new();
        assert!(
            faults
                .decide(&get("/users", &headers), &mut rand::rng())
                .is_some()
        );
        assert_eq!(faults.list().len(), 1);
        tokio::time::advance(Duration::from_millis(2001)).await;
        assert!(
            faults
                .decide(&get("/users", &headers), &mut rand::rng())
                .is_none()
        );
        assert!(faults.list().is_empty());
        faults.sweep();
        assert_eq!(faults.inner.rules.read().unwrap().len(), 0);
    }

    #[test]
    fn the_cap_refuses_one_rule_too_many() {
        let faults = Faults::new("user", 2);
        for _ in 0..2 {
            faults
                .apply(rule(serde_json::json!({"action": "reset"})))
                .unwrap();
        }
        let err = faults
            .apply(rule(serde_json::json!({"action": "reset"})))
            .unwrap_err();
        assert!(matches!(err, ChaosError::CapReached { cap: 2 }), "{err}");
        assert_eq!(faults.clear(), 2);
        faults
            .apply(rule(serde_json::json!({"action": "reset"})))
            .unwrap();
    }

    #[test]
    fn delete_removes_one_and_reports_an_unknown_id() {
        let faults = Faults::new("user", DEFAULT_CAP);
        let a = faults
            .apply(rule(serde_json::json!({"action": "reset"})))
            .unwrap();
        let b = faults
            .apply(rule(serde_json::json!({"action": "hang"})))
            .unwrap();
        assert!(faults.delete(&a.id));
        assert!(!faults.delete(&a.id));
        assert_eq!(
            faults
                .list()
                .iter()
                .map(|f| f.id.clone())
                .collect::<Vec<_>>(),
            [b.id]
        );
    }
}
