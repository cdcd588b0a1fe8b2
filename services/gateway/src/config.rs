//! The gateway's configuration: which path prefixes go to which upstream, what each route
//! requires of the caller, and the limits. Read from a YAML file (`--config`); without one,
//! the platform's defaults (`gateway.yaml` in this crate) apply.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// The defaults: every platform service on its conventional port.
pub const DEFAULT_CONFIG: &str = include_str!("../gateway.yaml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: String,
        field: String,
        message: String,
    },
}

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Each upstream's instances (`http://host:port`, no trailing slash): one, or several
    /// that share its requests in turn.
    pub upstreams: BTreeMap<String, Vec<String>>,
    pub routes: Vec<Route>,
    pub jwt: JwtConfig,
    /// Requests per second per client (user id when signed in, else address), and burst.
    pub rate_limit: RateLimit,
    pub cors: Cors,
    pub retry_budget: RetryBudget,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Where auth publishes its keys.
    pub jwks_url: String,
    pub issuer: String,
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

fn default_leeway() -> u64 {
    30
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub rate: f64,
    pub burst: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    /// Origins allowed to call from a browser; empty = no CORS headers.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    /// Retries allowed as a share of requests, in percent.
    pub percent: f32,
    /// Retries allowed per second whatever the traffic.
    pub min_per_second: u32,
}

/// One prefix and where it goes.
#[derive(Debug, Clone)]
pub struct Route {
    /// e.g. `/api/users`.
    pub prefix: String,
    pub upstream: String,
    /// Removed from the front of the path before forwarding (`/api`: `/api/users/1` →
    /// `/users/1`).
    pub strip: String,
    /// No token needed (sign-in routes). A rule with roles still requires one.
    pub public: bool,
    /// Until the upstream's response headers; bodies and WebSockets are not cut off.
    pub timeout: Duration,
    pub rules: Vec<Rule>,
}

/// A method and path pattern that needs one of `roles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `None` for any method.
    pub method: Option<String>,
    /// Segments; `{name}` matches one, a trailing `{*name}` the rest.
    pub path: Vec<String>,
    pub roles: Vec<String>,
}

impl Rule {
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if self
            .method
            .as_deref()
            .is_some_and(|m| !m.eq_ignore_ascii_case(method))
        {
            return false;
        }
        let mut actual = path.trim_end_matches('/').split('/');
        for pattern in &self.path {
            if pattern.starts_with("{*") {
                return true;
            }
            match actual.next() {
                Some(segment) if pattern.starts_with('{') && !segment.is_empty() => {}
                Some(segment) if segment == pattern => {}
                _ => return false,
            }
        }
        actual.next().is_none()
    }
}

// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    upstreams: BTreeMap<String, Instances>,
    routes: Vec<RouteFile>,
    jwt: JwtConfig,
    rate_limit: RateLimit,
    #[serde(default)]
    cors: Cors,
    retry_budget: RetryBudget,
}

/// An upstream written as one URL or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Instances {
    One(String),
    Many(Vec<String>),
}

impl Instances {
    fn into_urls(self) -> Vec<String> {
        let urls = match self {
            Self::One(url) => vec![url],
            Self::Many(urls) => urls,
        };
        urls.into_iter()
            .map(|url| url.trim_end_matches('/').to_owned())
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    prefix: String,
    upstream: String,
    #[serde(default)]
    strip: String,
    #[serde(default)]
    public: bool,
    #[serde(default = "default_timeout")]
    timeout: String,
    #[serde(default)]
    rules: Vec<RuleFile>,
}

fn default_timeout() -> String {
    "10s".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    method: Option<String>,
    path: String,
    roles: Vec<String>,
}

impl GatewayConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    pub fn defaults() -> Self {
        Self::parse("gateway.yaml (built in)", DEFAULT_CONFIG)
            .expect("the built-in configuration is valid")
    }

    pub fn parse(path: &str, text: &str) -> Result<Self, ConfigError> {
        let file: File = serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let invalid = |field: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            message,
        };
        let upstreams: BTreeMap<String, Vec<String>> = file
            .upstreams
            .into_iter()
            .map(|(name, instances)| (name, instances.into_urls()))
            .collect();
        for (name, urls) in &upstreams {
            if urls.is_empty() {
                return Err(invalid(
                    format!("upstreams.{name}"),
                    "needs at least one URL".into(),
                ));
            }
            if let Some(url) = urls.iter().find(|url| !is_http_url(url)) {
                return Err(invalid(
                    format!("upstreams.{name}"),
                    format!("`{url}` is not an http:// URL with a host"),
                ));
            }
        }
        if file.rate_limit.rate <= 0.0 || file.rate_limit.burst < 1.0 {
            return Err(invalid(
                "rate_limit".into(),
                "rate must be above 0 and burst at least 1".into(),
            ));
        }
        if !(0.0..=1000.0).contains(&file.retry_budget.percent) {
            return Err(invalid(
                "retry_budget.percent".into(),
                "must be between 0 and 1000".into(),
            ));
        }
        let mut routes = Vec::new();
        for (i, route) in file.routes.into_iter().enumerate() {
            let field = |f: &str| format!("routes[{i}].{f}");
            if !route.prefix.starts_with('/')
                || route.prefix.len() < 2
                || route.prefix.ends_with('/')
            {
                return Err(invalid(
                    field("prefix"),
                    "must start with / and not end with one, e.g. /api/users".into(),
                ));
            }
            if !upstreams.contains_key(&route.upstream) {
                return Err(invalid(
                    field("upstream"),
                    format!(
                        "no upstream `{}`; upstreams are: {}",
                        route.upstream,
                        upstreams.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if !route.prefix.starts_with(&route.strip) {
                return Err(invalid(
                    field("strip"),
                    "must be the start of prefix".into(),
                ));
            }
            let timeout = sloop_duration::parse_positive(&route.timeout)
                .map_err(|e| invalid(field("timeout"), e.to_string()))?;
            let rules = route
                .rules
                .into_iter()
                .map(|rule| Rule {
                    method: rule.method.map(|m| m.to_uppercase()),
                    path: rule
                        .path
                        .trim_matches('/')
                        .split('/')
                        .map(str::to_owned)
                        .collect(),
                    roles: rule.roles,
                })
                .map(|mut rule| {
                    rule.path.insert(0, String::new());
                    rule
                })
                .collect();
            routes.push(Route {
                prefix: route.prefix,
                upstream: route.upstream,
                strip: route.strip,
                public: route.public,
                timeout,
                rules,
            });
        }
        if routes.is_empty() {
            return Err(invalid(
                "routes".into(),
                "at least one route is needed".into(),
            ));
        }
        Ok(Self {
            upstreams,
            routes,
            jwt: file.jwt,
            rate_limit: file.rate_limit,
            cors: file.cors,
            retry_budget: file.retry_budget,
        })
    }

    /// Points upstream `name` (and, for `auth`, the JWKS) at `url`.
    pub fn set_upstream(&mut self, name: &str, url: &str) {
        self.set_upstream_instances(name, &[url]);
    }

    /// Points upstream `name` at several instances that share its requests in turn. An
    /// auth JWKS URL that pointed at auth follows its first instance.
    pub fn set_upstream_instances(&mut self, name: &str, urls: &[impl AsRef<str>]) {
        let urls: Vec<String> = urls
            .iter()
            .map(|url| url.as_ref().trim_end_matches('/').to_owned())
            .collect();
        let Some(first) = urls.first() else { return };
        let jwks_follows_auth = self
            .upstreams
            .get("auth")
            .and_then(|old| old.first())
            .is_some_and(|old| self.jwt.jwks_url.starts_with(old.as_str()));
        if name == "auth" && jwks_follows_auth {
            self.jwt.jwks_url = format!("{first}/.well-known/jwks.json");
        }
        self.upstreams.insert(name.to_owned(), urls);
    }
}

fn is_http_url(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://"))
        && url
            .parse::<http::Uri>()
            .is_ok_and(|u| u.authority().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_configuration_routes_every_platform_service() {
        let config = GatewayConfig::defaults();
        let users = config
            .routes
            .iter()
            .find(|r| r.prefix == "/api/users")
            .unwrap();
        assert_eq!(
            (users.upstream.as_str(), users.strip.as_str()),
            ("user", "/api")
        );
        assert!(!users.public);
        let auth = config
            .routes
            .iter()
            .find(|r| r.prefix == "/api/auth")
            .unwrap();
        assert!(auth.public);
        assert_eq!(config.upstreams["auth"], ["http://127.0.0.1:8081"]);
    }

    #[test]
    fn an_upstream_may_list_several_instances() {
        let text = DEFAULT_CONFIG.replace(
            "chat: http://127.0.0.1:8083",
            "chat: [http://127.0.0.1:8083, \"http://127.0.0.1:8093/\"]",
        );
        let config = GatewayConfig::parse("g.yaml", &text).unwrap();
        assert_eq!(
            config.upstreams["chat"],
            ["http://127.0.0.1:8083", "http://127.0.0.1:8093"]
        );
        for (list, complaint) in [("[]", "at least one URL"), ("[http://a:1, b:2]", "`b:2`")] {
            let text =
                DEFAULT_CONFIG.replace("chat: http://127.0.0.1:8083", &format!("chat: {list}"));
            let err = GatewayConfig::parse("g.yaml", &text)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("upstreams.chat") && err.contains(complaint),
                "{err}"
            );
        }
    }

    #[test]
    fn rules_match_methods_and_templated_paths() {
        let rule = Rule {
            method: Some("PUT".into()),
            path: vec![
                "".into(),
                "api".into(),
                "users".into(),
                "{id}".into(),
                "status".into(),
            ],
            roles: vec!["admin".into()],
        };
        assert!(rule.matches("PUT", "/api/users/42/status"));
        assert!(rule.matches("put", "/api/users/42/status/"));
        assert!(!rule.matches("GET", "/api/users/42/status"));
        assert!(!rule.matches("PUT", "/api/users/42"));
        assert!(!rule.matches("PUT", "/api/users//status"));
        assert!(!rule.matches("PUT", "/api/users/42/status/x"));
        let rest = Rule {
            method: None,
            path: vec!["".into(), "api".into(), "admin".into(), "{*rest}".into()],
            roles: vec![],
        };
        assert!(rest.matches("DELETE", "/api/admin/a/b/c"));
    }

    #[test]
    fn mistakes_name_the_field() {
        let bad = DEFAULT_CONFIG.replace("upstream: user", "upstream: usr");
        let err = GatewayConfig::parse("g.yaml", &bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("routes[") && err.contains("no upstream `usr`"),
            "{err}"
        );
        let bad = DEFAULT_CONFIG.replacen("timeout: 10s", "timeout: soon", 1);
        let err = GatewayConfig::parse("g.yaml", &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("timeout") && err.contains("30s"), "{err}");
        let err = GatewayConfig::parse("g.yaml", "routes: [")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("g.yaml: "), "{err}");
    }

    #[test]
    fn overriding_auth_moves_the_jwks_too() {
        let mut config = GatewayConfig::defaults();
        config.set_upstream("auth", "http://10.0.0.5:9000/");
        assert_eq!(config.upstreams["auth"], ["http://10.0.0.5:9000"]);
        assert_eq!(
            config.jwt.jwks_url,
            "http://10.0.0.5:9000/.well-known/jwks.json"
        );
    }
}
