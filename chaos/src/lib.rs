//! Fault injection for sloop's services, safe by default: off unless a service is started
//! with chaos enabled, refused where the environment says production (unless forced), every
//! rule expiring, a cap on active rules, one call that clears all, every injection counted
//! (`chaos_faults_injected_total{service,fault,route}`, `chaos_faults_active{service}`) and
//! marked on the request's span.
//!
//! - [`rule`]: what a fault is (matcher, action, probability, TTL) and its checks;
//! - [`Faults`]: the active rules of one service, consulted on every request;
//! - [`layer`]: the tower layer that injects them into a service's API;
//! - [`admin`]: the `/chaos/faults` admin API behind a bearer token;

pub mod admin;
pub mod faults;
pub mod layer;
pub mod rule;

pub use faults::{DEFAULT_CAP, Fault, Faults, Injection};
pub use layer::layer;
pub use rule::{Action, Rule, Target};

/// What chaos can refuse.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChaosError {
    #[error("invalid fault rule: {0}")]
    InvalidRule(String),
    #[error("{cap} faults are active already, the most allowed; delete one or clear them first")]
    CapReached { cap: usize },
    #[error(
        "chaos refused: DEPLOYMENT_ENVIRONMENT is `production`; pass --chaos-force (CHAOS_FORCE=true) if you really mean to inject faults there"
    )]
    Production,
}

/// How a service was asked to run chaos.
#[derive(Debug, Clone, Default)]
pub struct Switch {
    /// `--chaos` / `CHAOS_ENABLED`.
    pub enabled: bool,
    /// `--chaos-force` / `CHAOS_FORCE`: allow it in production.
    pub force: bool,
    /// `DEPLOYMENT_ENVIRONMENT`, as OpenTelemetry's resource names it.
    pub environment: Option<String>,
    /// `CHAOS_TOKEN`: without one the admin API is not served.
    pub token: Option<String>,
    /// Most active rules.
    pub cap: usize,
}

/// Chaos as a service runs it: the faults, and the admin token if the API is served.
#[derive(Clone)]
pub struct Enabled {
    pub faults: Faults,
    pub token: Option<String>,
}

impl Switch {
    /// `None` when chaos is off; refuses to turn it on in production unless forced.
    pub fn resolve(&self, service: &'static str) -> Result<Option<Enabled>, ChaosError> {
        if !self.enabled {
            return Ok(None);
        }
        let production = self.environment.as_deref().is_some_and(|env| {
            env.trim().eq_ignore_ascii_case("production") || env.trim().eq_ignore_ascii_case("prod")
        });
        if production && !self.force {
            return Err(ChaosError::Production);
        }
        let token = self.token.clone().filter(|t| !t.trim().is_empty());
        tracing::warn!(
            service,
            admin_api = token.is_some(),
            "chaos is ON: faults can be injected into this service"
        );
        Ok(Some(Enabled {
            faults: Faults::new(service, self.cap.max(1)),
            token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch(enabled: bool, force: bool, environment: Option<&str>) -> Switch {
        Switch {
            enabled,
            force,
            environment: environment.map(str::to_owned),
            token: Some("t".to_owned()),
            cap: DEFAULT_CAP,
        }
    }

    #[test]
    fn off_unless_enabled() {
        assert!(switch(false, true, None).resolve("user").unwrap().is_none());
        assert!(
            switch(true, false, Some("staging"))
                .resolve("user")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn production_is_refused_unless_forced() {
        for env in ["production", "Production", "prod"] {
            assert_eq!(
                switch(true, false, Some(env)).resolve("user").err(),
                Some(ChaosError::Production)
            );
            assert!(
                switch(true, true, Some(env))
                    .resolve("user")
                    .unwrap()
                    .is_some()
            );
        }
    }

    #[test]
    fn a_blank_token_serves_no_admin_api() {
        let mut s = switch(true, false, None);
        s.token = Some("  ".to_owned());
        assert!(s.resolve("user").unwrap().unwrap().token.is_none());
    }
}
