//! Where each service's admin API is: the platform's ports on loopback by default, or a
//! targets file (YAML, `name: base URL` per line) for staging.

use std::collections::BTreeMap;
use std::path::Path;

/// The platform's services and their default ports.
pub const PLATFORM: [(&str, u16); 9] = [
    ("gateway", 8080),
    ("auth", 8081),
    ("user", 8082),
    ("chat", 8083),
    ("store", 8084),
    ("batch", 8085),
    ("notification", 8086),
    ("audit", 8087),
    ("payment", 8088),
];

/// Base URL of each service by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets(BTreeMap<String, String>);

#[derive(Debug, thiserror::Error)]
pub enum TargetsError {
    #[error("cannot read the targets file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a targets file (a YAML map of service name to base URL): {reason}")]
    Parse { path: String, reason: String },
    #[error("{path}: `{name}: {url}` is not an http:// or https:// base URL")]
    BadUrl {
        path: String,
        name: String,
        url: String,
    },
    #[error("no service `{name}` among the targets ({known}); add it to the targets file")]
    Unknown { name: String, known: String },
}

impl Default for Targets {
    fn default() -> Self {
        Self(
            PLATFORM
                .iter()
                .map(|(name, port)| ((*name).to_owned(), format!("http://127.0.0.1:{port}")))
                .collect(),
        )
    }
}

impl Targets {
    /// The defaults, overridden and extended by the file's entries.
    pub fn load(path: &Path) -> Result<Self, TargetsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TargetsError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    pub fn parse(text: &str, path: &str) -> Result<Self, TargetsError> {
        let entries: BTreeMap<String, String> =
            serde_saphyr::from_str(text).map_err(|err| TargetsError::Parse {
                path: path.to_owned(),
                reason: err.to_string(),
            })?;
        let mut targets = Self::default();
        for (name, url) in entries {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(TargetsError::BadUrl {
                    path: path.to_owned(),
                    name,
                    url,
                });
            }
            targets.0.insert(name, url.trim_end_matches('/').to_owned());
        }
        Ok(targets)
    }

    pub fn url(&self, name: &str) -> Result<&str, TargetsError> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| TargetsError::Unknown {
                name: name.to_owned(),
                known: self.names().collect::<Vec<_>>().join(", "),
            })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_platform_ports() {
        let t = Targets::default();
        assert_eq!(t.url("user").unwrap(), "http://127.0.0.1:8082");
        assert_eq!(t.url("gateway").unwrap(), "http://127.0.0.1:8080");
    }

    #[test]
    fn a_file_overrides_and_adds() {
        let t = Targets::parse(
            "user: http://10.0.0.7:8082/\nsearch: https://search.staging\n",
            "t.yaml",
        )
        .unwrap();
        assert_eq!(t.url("user").unwrap(), "http://10.0.0.7:8082");
        assert_eq!(t.url("search").unwrap(), "https://search.staging");
        assert_eq!(t.url("auth").unwrap(), "http://127.0.0.1:8081");
    }

    #[test]
    fn mistakes_say_what_to_fix() {
        let err = Targets::parse("user: 10.0.0.7:8082\n", "t.yaml").unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
        let err = Targets::default().url("nope").unwrap_err();
        assert!(err.to_string().contains("user"), "{err}");
        assert!(Targets::parse("- a list\n", "t.yaml").is_err());
    }
}
