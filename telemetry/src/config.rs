//! Telemetry settings read from the standard environment variables, validated up front.
//!
//! Every variable is optional: an unset exporter is off. A value that is set but malformed
//! is an error naming the variable, so a typo stops start-up instead of silently losing data.

use std::collections::HashMap;

/// Why a telemetry variable could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{var}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault, e.g. `OTEL_TRACES_SAMPLER_ARG`.
    pub var: &'static str,
    pub value: String,
    /// What a valid value looks like.
    pub reason: String,
}

/// OTLP wire protocol, as `OTEL_EXPORTER_OTLP_PROTOCOL` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

/// Where and how spans are exported.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// Full URL of the trace endpoint (for HTTP it already ends in `/v1/traces`).
    pub traces_endpoint: String,
    pub protocol: OtlpProtocol,
}

/// Which spans are kept, as `OTEL_TRACES_SAMPLER` names them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerConfig {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

/// How log lines are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for machines (the default when stdout is not a terminal).
    Json,
    /// Human-readable text, for a terminal.
    Pretty,
}

/// Everything `telemetry::init` needs, resolved from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    pub service_name: String,
    /// `service.version` on every span: the release of sloop this binary was built from.
    pub service_version: String,
    /// `OTEL_SDK_DISABLED=true`: no spans, no request metrics, no per-request layer at all
    /// (log lines still go to stdout). For measuring what telemetry costs.
    pub sdk_disabled: bool,
    pub otlp: Option<OtlpConfig>,
    pub sampler: SamplerConfig,
    /// `RUST_LOG` directives; `info` when unset.
    pub log_filter: String,
    pub log_format: LogFormat,
    pub loki_url: Option<String>,
    pub sentry_dsn: Option<String>,
    /// `DEPLOYMENT_ENVIRONMENT`, reported to Sentry and as a resource attribute.
    pub environment: Option<String>,
}

impl TelemetryConfig {
    /// Reads the process environment. `default_service` is used when `OTEL_SERVICE_NAME` is unset.
    pub fn from_env(default_service: &str) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::from_lookup(default_service, |key| env.get(key).cloned())
    }

    /// Reads settings through `lookup`, so tests can supply variables without touching the
    /// process environment.
    pub fn from_lookup(
        default_service: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let service_name = get("OTEL_SERVICE_NAME").unwrap_or_else(|| default_service.to_owned());
        let sdk_disabled = parse_bool("OTEL_SDK_DISABLED", get("OTEL_SDK_DISABLED"))?;
        let protocol = parse_protocol(get("OTEL_EXPORTER_OTLP_PROTOCOL"))?;
        let otlp = parse_otlp(
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            protocol,
        )?;
        let sampler = parse_sampler(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG"))?;
        let log_format = parse_log_format(get("LOG_FORMAT"))?;
        let loki_url = get("LOKI_URL")
            .map(|v| require_http_url("LOKI_URL", v))
            .transpose()?;
        let sentry_dsn = get("SENTRY_DSN").map(validate_dsn).transpose()?;
        Ok(Self {
            service_name,
            service_version: env!("CARGO_PKG_VERSION").to_owned(),
            sdk_disabled,
            otlp,
            sampler,
            log_filter: get("RUST_LOG").unwrap_or_else(|| "info".to_owned()),
            log_format,
            loki_url,
            sentry_dsn,
            environment: get("DEPLOYMENT_ENVIRONMENT"),
        })
    }
}

fn parse_protocol(value: Option<String>) -> Result<OtlpProtocol, ConfigError> {
    match value.as_deref() {
        None | Some("grpc") => Ok(OtlpProtocol::Grpc),
        Some("http/protobuf") => Ok(OtlpProtocol::HttpProtobuf),
        Some(other) => Err(ConfigError {
            var: "OTEL_EXPORTER_OTLP_PROTOCOL",
            value: other.to_owned(),
            reason: "use `grpc` or `http/protobuf`".to_owned(),
        }),
    }
}

/// The per-signal variable wins and is used as-is; the generic one gets `/v1/traces` appended
/// for HTTP, as the OTLP exporter specification requires.
fn parse_otlp(
    traces_endpoint: Option<String>,
    endpoint: Option<String>,
    protocol: OtlpProtocol,
) -> Result<Option<OtlpConfig>, ConfigError> {
    let traces_endpoint = match (traces_endpoint, endpoint) {
        (Some(url), _) => require_http_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url)?,
        (None, Some(url)) => {
            let base = require_http_url("OTEL_EXPORTER_OTLP_ENDPOINT", url)?;
            match protocol {
                OtlpProtocol::Grpc => base,
                OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
            }
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(OtlpConfig {
        traces_endpoint,
        protocol,
    }))
}

fn require_http_url(var: &'static str, value: String) -> Result<String, ConfigError> {
    let parsed: Result<http::Uri, _> = value.parse();
    match parsed {
        Ok(uri)
            if matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some() =>
        {
            Ok(value)
        }
        _ => Err(ConfigError {
            var,
            value,
            reason: "expected an http:// or https:// URL with a host, e.g. http://localhost:4318"
                .to_owned(),
        }),
    }
}

fn parse_sampler(name: Option<String>, arg: Option<String>) -> Result<SamplerConfig, ConfigError> {
    let ratio = || -> Result<f64, ConfigError> {
        let Some(raw) = arg.clone() else {
            return Ok(1.0);
        };
        match raw.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => Err(ConfigError {
                var: "OTEL_TRACES_SAMPLER_ARG",
                value: raw,
                reason: "expected a probability between 0 and 1, e.g. 0.25".to_owned(),
            }),
        }
    };
    Ok(match name.as_deref() {
        None | Some("parentbased_always_on") => SamplerConfig::ParentBasedAlwaysOn,
        Some("always_on") => SamplerConfig::AlwaysOn,
        Some("always_off") => SamplerConfig::AlwaysOff,
        Some("traceidratio") => SamplerConfig::TraceIdRatio(ratio()?),
        Some("parentbased_always_off") => SamplerConfig::ParentBasedAlwaysOff,
        Some("parentbased_traceidratio") => SamplerConfig::ParentBasedTraceIdRatio(ratio()?),
        Some(other) => {
            return Err(ConfigError {
                var: "OTEL_TRACES_SAMPLER",
                value: other.to_owned(),
                reason: "use always_on, always_off, traceidratio, parentbased_always_on, \
                         parentbased_always_off or parentbased_traceidratio"
                    .to_owned(),
            });
        }
    })
}

/// OpenTelemetry booleans are `true` or `false` in any case; anything else is a typo we
/// report rather than read as false.
fn parse_bool(var: &'static str, value: Option<String>) -> Result<bool, ConfigError> {
    match value {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(ConfigError {
            var,
            value: other,
            reason: "use `true` or `false`".to_owned(),
        }),
    }
}

fn parse_log_format(value: Option<String>) -> Result<LogFormat, ConfigError> {
    match value.as_deref() {
        None => Ok(if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        }),
        Some("json") => Ok(LogFormat::Json),
        Some("pretty") => Ok(LogFormat::Pretty),
        Some(other) => Err(ConfigError {
            var: "LOG_FORMAT",
            value: other.to_owned(),
            reason: "use `json` or `pretty`".to_owned(),
        }),
    }
}

fn validate_dsn(value: String) -> Result<String, ConfigError> {
    match value.parse::<sentry::types::Dsn>() {
        Ok(_) => Ok(value),
        Err(err) => Err(ConfigError {
            var: "SENTRY_DSN",
            value,
            reason: format!("{err}; expected https://PUBLIC_KEY@HOST/PROJECT_ID"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<TelemetryConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TelemetryConfig::from_lookup("user", |k| map.get(k).cloned())
    }

    #[test]
    fn unset_exporters_are_off() {
        let c = config(&[("LOG_FORMAT", "json")]).unwrap();
        assert_eq!(c.service_name, "user");
        assert_eq!(c.otlp, None);
        assert_eq!(c.loki_url, None);
        assert_eq!(c.sentry_dsn, None);
        assert_eq!(c.sampler, SamplerConfig::ParentBasedAlwaysOn);
        assert_eq!(c.log_filter, "info");
        assert!(!c.sdk_disabled);
    }

    #[test]
    fn sdk_disabled_reads_otel_booleans_and_rejects_typos() {
        assert!(
            config(&[("OTEL_SDK_DISABLED", "TRUE")])
                .unwrap()
                .sdk_disabled
        );
        assert!(
            !config(&[("OTEL_SDK_DISABLED", "false")])
                .unwrap()
                .sdk_disabled
        );
        let err = config(&[("OTEL_SDK_DISABLED", "yes")]).unwrap_err();
        assert_eq!(err.var, "OTEL_SDK_DISABLED");
        assert!(err.to_string().contains("`true` or `false`"), "{err}");
    }

    #[test]
    fn http_endpoint_gets_signal_path() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "billing"),
        ])
        .unwrap();
        let otlp = c.otlp.unwrap();
        assert_eq!(otlp.traces_endpoint, "http://collector:4318/v1/traces");
        assert_eq!(otlp.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(c.service_name, "billing");
    }

    #[test]
    fn grpc_endpoint_is_used_as_is() {
        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")]).unwrap();
        assert_eq!(c.otlp.unwrap().traces_endpoint, "http://collector:4317");
    }

    #[test]
    fn malformed_values_name_their_variable() {
        let cases = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json5"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("LOG_FORMAT", "xml"),
            ("LOKI_URL", "not a url"),
            ("SENTRY_DSN", "https://sentry.io"),
        ];
        for (var, value) in cases {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{err}");
            assert!(err.to_string().contains(var));
        }
    }

    #[test]
    fn sampler_ratio_must_be_a_probability() {
        let err = config(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "OTEL_TRACES_SAMPLER_ARG");
        let ok = config(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ])
        .unwrap();
        assert_eq!(ok.sampler, SamplerConfig::ParentBasedTraceIdRatio(0.25));
    }
}
