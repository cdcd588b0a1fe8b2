//! A report as a run stores it (JSON) and as clients download it: JSON as stored, or CSV
//! (RFC 4180) with a header row of the report's columns and one line per row.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::jobs::{Job, Period};

/// A table of results a report job made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Report {
    /// The job that made it, e.g. `sales-report`.
    pub job: String,
    /// The run that made it.
    pub run_id: String,
    /// First day covered (UTC, inclusive).
    #[schema(format = Date)]
    pub from: String,
    /// Last day covered (UTC, inclusive).
    #[schema(format = Date)]
    pub to: String,
    /// When the run built it (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub generated_at: String,
    /// The fields of every row, in CSV column order.
    pub columns: Vec<String>,
    /// One object per row, with a member per column. Amounts are integer minor units.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Map<String, Value>>,
}

impl Report {
    pub fn new(
        job: Job,
        run_id: &str,
        period: Period,
        columns: &[&str],
        rows: Vec<Map<String, Value>>,
        generated_at: &str,
    ) -> Self {
        Self {
            job: job.name().to_owned(),
            run_id: run_id.to_owned(),
            from: period.from_text(),
            to: period.to_text(),
            generated_at: generated_at.to_owned(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows,
        }
    }

    /// The rows as CSV: a header line, then a line per row, each ended by CRLF.
    pub fn to_csv(&self) -> String {
        let mut csv = String::new();
        push_line(&mut csv, self.columns.iter().map(|c| field(c)));
        for row in &self.rows {
            push_line(
                &mut csv,
                self.columns
                    .iter()
                    .map(|column| cell(row.get(column).unwrap_or(&Value::Null))),
            );
        }
        csv
    }
}

fn push_line(csv: &mut String, fields: impl Iterator<Item = String>) {
    let fields: Vec<String> = fields.collect();
    csv.push_str(&fields.join(","));
    csv.push_str("\r\n");
}

/// A value as a CSV field: numbers and text as written, nothing for null.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => field(text),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        other => field(&other.to_string()),
    }
}

/// Quotes a field that holds a separator, a quote or a line break, doubling its quotes.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schedule::parse_day;

    #[test]
    fn csv_has_a_header_and_a_line_per_row() {
        let day = parse_day("2026-12-02").unwrap();
        let row = |value: Value| match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let report = Report::new(
            Job::SalesReport,
            "r-1",
            Period::before(day, 1).unwrap(),
            &["day", "currency", "revenue"],
            vec![
                row(json!({ "day": "2026-12-01", "currency": "EUR", "revenue": 3998 })),
                row(json!({ "day": "2026-12-01", "currency": "a,\"b\"", "revenue": null })),
            ],
            "2026-12-02T00:10:00.000000Z",
        );
        assert_eq!(
            report.to_csv(),
            "day,currency,revenue\r\n2026-12-01,EUR,3998\r\n2026-12-01,\"a,\"\"b\"\"\",\r\n"
        );
    }
}
