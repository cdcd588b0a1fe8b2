//! Reading other tools' SLO files into the native model, as their authors wrote them:
//! OpenSLO v1 ([`openslo`]) and Sloth `prometheus/v1` ([`sloth`]).

mod openslo;
mod sloth;

use std::path::Path;

use serde_json::Value;

use crate::spec::{ServiceSlos, SpecError, parse_native};

/// Detects the format of `text` and reads it.
pub fn parse_any(path: &Path, text: &str) -> Result<Vec<ServiceSlos>, SpecError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| SpecError::Syntax {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    // OpenSLO objects come one per document or as a YAML list of them.
    let first = match docs.first() {
        Some(Value::Array(items)) => items.first().cloned().unwrap_or(Value::Null),
        Some(doc) => doc.clone(),
        None => Value::Null,
    };
    if first["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("openslo/"))
    {
        openslo::parse(path, text, docs.first().is_some_and(Value::is_array))
    } else if first["version"] == "prometheus/v1" {
        sloth::parse(path, text)
    } else {
        Ok(vec![parse_native(path, text)?])
    }
}

/// Sloth and OpenSLO write `{{.window}}` (a Go template); the native format `{{window}}`.
fn window_template(query: &str) -> String {
    query
        .replace("{{.window}}", "{{window}}")
        .replace("{{ .window }}", "{{window}}")
}
