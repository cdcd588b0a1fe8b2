//! What a fault is: which requests it matches, what it does to them, how often and for how
//! long. Rules arrive as JSON over the admin API (and from experiment files), so every
//! limit is checked here and a bad rule is refused with a reason, never half-applied.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The longest a rule may live; an experiment that needs longer applies it again.
pub const MAX_TTL: Duration = Duration::from_secs(60 * 60);
/// The time-to-live of a rule that does not say.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);
/// The longest delay one rule may add to a request.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// A fault: requests it matches get its action, each with `probability`, until `ttl` runs
/// out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// What the fault hits: the service's API requests (default), or one of its
    /// dependencies as the service sees it — its database, its event publishing, its
    /// event consuming — to play a slow database or a broker outage without touching them.
    #[serde(default, skip_serializing_if = "Target::is_http")]
    pub target: Target,
    /// Which requests; an empty matcher matches every API request of the service.
    #[serde(default, rename = "match")]
    pub matcher: Matcher,
    /// What happens to them.
    pub action: Action,
    /// Chance, in (0, 1], that a matching request is hit.
    #[serde(default = "always")]
    pub probability: f64,
    /// How long the rule lives, e.g. `90s`, `5m` (default 5m, at most 1h).
    #[serde(default = "default_ttl", with = "sloop_duration::serde")]
    #[schema(value_type = String, example = "5m")]
    pub ttl: Duration,
}

fn always() -> f64 {
    1.0
}

fn default_ttl() -> Duration {
    DEFAULT_TTL
}

/// Where a rule injects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The service's API requests, matched by method, route and headers.
    #[default]
    Http,
    /// Every database connection the service takes from its pool: a delay holds each
    /// query's connection, an abort makes taking one fail (after the pool's acquire
    /// timeout, as with a database that stopped answering).
    Database,
    /// Every event the outbox relay publishes: a delay slows publishing, an abort fails it
    /// (the relay retries later, as with a broker outage).
    Publish,
    /// Every event a consumer handles: a delay slows handling, an abort fails it (retried,
    /// then dead-lettered, as with a handler whose dependency is down).
    Consume,
}

impl Target {
    pub fn is_http(&self) -> bool {
        *self == Target::Http
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Target::Http => "http",
            Target::Database => "database",
            Target::Publish => "publish",
            Target::Consume => "consume",
        }
    }
}

/// Which requests a rule applies to. Every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    /// The service's name (`user`, `auth`, …); when given, a service refuses a rule that
    /// names another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// HTTP method, any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Route template as the service declares it (`/users/{id}`), or a prefix ending in
    /// `*` (`/users*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Request headers that must be present with exactly these values (names any case).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// What a rule does to a request it hits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Hold the request before the service sees it, then let it through.
    Delay(Delay),
    /// Answer at once with `status` and a problem document; the service never sees it.
    Abort(Abort),
    /// Drop the connection without an answer.
    Reset,
    /// Never answer: hold the request until the client gives up (or the rule expires, when
    /// the connection is dropped).
    Hang,
}

impl Action {
    /// The `fault` label of the injection counter.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Delay(_) => "delay",
            Self::Abort(_) => "abort",
            Self::Reset => "reset",
            Self::Hang => "hang",
        }
    }
}

/// How long to hold a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Delay {
    /// `fixed`, plus up to `jitter` more drawn uniformly.
    Fixed {
        #[serde(with = "sloop_duration::serde")]
        #[schema(value_type = String, example = "200ms")]
        fixed: Duration,
        #[serde(default, with = "sloop_duration::serde")]
        #[schema(value_type = String, example = "50ms")]
        jitter: Duration,
    },
    /// Drawn from a log-normal distribution with this median and 99th percentile: most
    /// requests a little slow, a few very slow, as real latency is.
    LogNormal {
        #[serde(with = "sloop_duration::serde")]
        #[schema(value_type = String, example = "100ms")]
        median: Duration,
        #[serde(with = "sloop_duration::serde")]
        #[schema(value_type = String, example = "2s")]
        p99: Duration,
    },
}

/// z of the 99th percentile of the standard normal distribution.
const Z99: f64 = 2.326_347_874;

impl Delay {
    /// One draw, never above [`MAX_DELAY`].
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        let drawn = match self {
            Self::Fixed { fixed, jitter } => {
                let extra = if jitter.is_zero() {
                    0.0
                } else {
                    rng.random_range(0.0..=jitter.as_secs_f64())
                };
                *fixed + Duration::from_secs_f64(extra)
            }
            Self::LogNormal { median, p99 } => {
                let mu = median.as_secs_f64().ln();
                let sigma = (p99.as_secs_f64().ln() - mu) / Z99;
                let seconds = LogNormal::new(mu, sigma)
                    .map(|d| d.sample(rng))
                    .unwrap_or(median.as_secs_f64());
                Duration::try_from_secs_f64(seconds).unwrap_or(MAX_DELAY)
            }
        };
        drawn.min(MAX_DELAY)
    }

    fn check(&self) -> Result<(), String> {
        match self {
            Self::Fixed { fixed, jitter } if *fixed + *jitter > MAX_DELAY => Err(format!(
                "delay fixed + jitter is {}; at most {} per rule",
                sloop_duration::format(*fixed + *jitter),
                sloop_duration::format(MAX_DELAY)
            )),
            Self::LogNormal { median, .. } if median.is_zero() => {
                Err("delay median must be above 0".to_owned())
            }
            Self::LogNormal { median, p99 } if p99 < median => {
                Err("delay p99 must be at least the median".to_owned())
            }
            Self::LogNormal { median, .. } if *median > MAX_DELAY => Err(format!(
                "delay median must be at most {}",
                sloop_duration::format(MAX_DELAY)
            )),
            _ => Ok(()),
        }
    }
}

/// The answer an aborted request gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Abort {
    /// An HTTP error status, 400–599.
    #[schema(example = 503)]
    pub status: u16,
    /// The problem document's `detail` (default: says it was injected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What the fault layer knows about a request when it matches rules.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub method: &'a str,
    /// The route template, or the raw path when no route matched.
    pub route: &'a str,
    pub headers: &'a http::HeaderMap,
}

impl Rule {
    /// Refuses a rule this service cannot honour, saying what to change.
    pub fn check(&self, service: &str) -> Result<(), String> {
        if let Some(other) = self.matcher.service.as_deref()
            && other != service
        {
            return Err(format!(
                "this is the {service} service; the rule matches service `{other}`"
            ));
        }
        if !(self.probability > 0.0 && self.probability <= 1.0) {
            return Err(format!(
                "probability is {}; it must be above 0 and at most 1",
                self.probability
            ));
        }
        if self.ttl.is_zero() || self.ttl > MAX_TTL {
            return Err(format!(
                "ttl is {}; it must be above 0 and at most {}",
                sloop_duration::format(self.ttl),
                sloop_duration::format(MAX_TTL)
            ));
        }
        if let Some(method) = &self.matcher.method
            && http::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).is_err()
        {
            return Err(format!("`{method}` is not an HTTP method"));
        }
        if let Some(route) = &self.matcher.route
            && !route.starts_with('/')
        {
            return Err(format!(
                "route `{route}` must start with `/`, like `/users/{{id}}` or `/users*`"
            ));
        }
        if !self.target.is_http() {
            let m = &self.matcher;
            if m.method.is_some() || m.route.is_some() || !m.headers.is_empty() {
                return Err(format!(
                    "a {} fault hits every {} call; drop match.method, match.route and match.headers",
                    self.target.as_str(),
                    self.target.as_str()
                ));
            }
            if matches!(self.action, Action::Reset | Action::Hang) {
                return Err(format!(
                    "a {} fault can delay or abort; reset and hang are for HTTP requests",
                    self.target.as_str()
                ));
            }
        }
        for name in self.matcher.headers.keys() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!("`{name}` is not a header name"));
            }
        }
        match &self.action {
            Action::Delay(delay) => delay.check(),
            Action::Abort(abort) if !(400..=599).contains(&abort.status) => Err(format!(
                "abort status is {}; it must be an error status, 400–599",
                abort.status
            )),
            _ => Ok(()),
        }
    }

    /// Whether `request` is one this rule is about (before the dice).
    pub fn matches(&self, request: &RequestInfo<'_>) -> bool {
        let m = &self.matcher;
        m.method
            .as_deref()
            .is_none_or(|method| method.eq_ignore_ascii_case(request.method))
            && m.route
                .as_deref()
                .is_none_or(|route| match route.strip_suffix('*') {
                    Some(prefix) => request.route.starts_with(prefix),
                    None => route == request.route,
                })
            && m.headers.iter().all(|(name, value)| {
                request
                    .headers
                    .get_all(name.as_str())
                    .iter()
                    .any(|v| v.as_bytes() == value.as_bytes())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn rule(json: serde_json::Value) -> Rule {
        serde_json::from_value(json).expect("a valid rule")
    }

    fn request<'a>(
        method: &'a str,
        route: &'a str,
        headers: &'a http::HeaderMap,
    ) -> RequestInfo<'a> {
        RequestInfo {
            method,
            route,
            headers,
        }
    }

    #[test]
    fn matches_by_method_route_and_header() {
        let r = rule(serde_json::json!({
            "match": {"method": "get", "route": "/users/{id}", "headers": {"x-canary": "1"}},
            "action": "reset"
        }));
        let mut headers = http::HeaderMap::new();
        assert!(
            !r.matches(&request("GET", "/users/{id}", &headers)),
            "header missing"
        );
        headers.insert("x-canary", "1".parse().unwrap());
        assert!(r.matches(&request("GET", "/users/{id}", &headers)));
        assert!(!r.matches(&request("POST", "/users/{id}", &headers)));
        assert!(!r.matches(&request("GET", "/users", &headers)));
        headers.insert("x-canary", "2".parse().unwrap());
        assert!(!r.matches(&request("GET", "/users/{id}", &headers)));
    }

    #[test]
    fn a_route_ending_in_a_star_is_a_prefix() {
        let r = rule(serde_json::json!({"match": {"route": "/users*"}, "action": "hang"}));
        let headers = http::HeaderMap::new();
        assert!(r.matches(&request("GET", "/users", &headers)));
        assert!(r.matches(&request("DELETE", "/users/{id}", &headers)));
        assert!(!r.matches(&request("GET", "/auth/login", &headers)));
    }

    #[test]
    fn defaults_are_always_for_five_minutes() {
        let r = rule(serde_json::json!({"action": {"abort": {"status": 503}}}));
        assert_eq!(r.probability, 1.0);
        assert_eq!(r.ttl, DEFAULT_TTL);
        assert_eq!(r.check("user"), Ok(()));
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        let cases = [
            (
                serde_json::json!({"action": "reset", "probability": 0}),
                "probability",
            ),
            (
                serde_json::json!({"action": "reset", "probability": 1.5}),
                "probability",
            ),
            (serde_json::json!({"action": "reset", "ttl": "2h"}), "ttl"),
            (
                serde_json::json!({"action": {"abort": {"status": 200}}}),
                "400–599",
            ),
            (
                serde_json::json!({"action": {"delay": {"fixed": "2m"}}}),
                "at most",
            ),
            (
                serde_json::json!({"action": {"delay": {"median": "1s", "p99": "10ms"}}}),
                "p99",
            ),
            (
                serde_json::json!({"match": {"service": "auth"}, "action": "reset"}),
                "auth",
            ),
            (
                serde_json::json!({"match": {"route": "users"}, "action": "reset"}),
                "start with",
            ),
            (
                serde_json::json!({"match": {"method": "GE T"}, "action": "reset"}),
                "method",
            ),
        ];
        for (json, needle) in cases {
            let err = rule(json.clone())
                .check("user")
                .expect_err(&json.to_string());
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn unknown_fields_and_bad_durations_do_not_parse() {
        assert!(
            serde_json::from_value::<Rule>(serde_json::json!({"action": "reset", "tll": "5m"}))
                .is_err()
        );
        assert!(
            serde_json::from_value::<Rule>(
                serde_json::json!({"action": "reset", "ttl": "5 parsecs"})
            )
            .is_err()
        );
        assert!(serde_json::from_value::<Rule>(serde_json::json!({"action": "explode"})).is_err());
    }

    #[test]
    fn fixed_delay_with_jitter_stays_in_its_band() {
        let delay = Delay::Fixed {
            fixed: Duration::from_millis(100),
            jitter: Duration::from_millis(50),
        };
        let mut rng = StdRng::seed_from_u64(7);
        let draws: Vec<Duration> = (0..1000).map(|_| delay.sample(&mut rng)).collect();
        assert!(
            draws
                .iter()
                .all(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_millis(150))
        );
        let mean = draws.iter().sum::<Duration>().as_secs_f64() / 1000.0;
        assert!((mean - 0.125).abs() < 0.005, "mean {mean}");
    }

    #[test]
    fn log_normal_delay_has_its_median_and_tail() {
        let delay = Delay::LogNormal {
            median: Duration::from_millis(100),
            p99: Duration::from_secs(1),
        };
        let mut rng = StdRng::seed_from_u64(11);
        let mut draws: Vec<Duration> = (0..20_000).map(|_| delay.sample(&mut rng)).collect();
        draws.sort();
        let median = draws[10_000].as_secs_f64();
        let p99 = draws[19_800].as_secs_f64();
        assert!((median - 0.1).abs() < 0.01, "median {median}");
        assert!((p99 - 1.0).abs() < 0.15, "p99 {p99}");
    }
}
