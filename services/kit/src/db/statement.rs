//! What a query span says about its SQL, by the OpenTelemetry database conventions: the
//! operation, the table it works on, a low-cardinality summary, and the text with every
//! literal value replaced by `?`, so no value a user typed reaches a trace.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

/// The span-ready description of one SQL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement {
    /// `db.operation.name`: the statement's verb, upper case (`SELECT`, `INSERT`, ...).
    pub operation: String,
    /// `db.collection.name`: the table the statement reads or writes, when there is one.
    pub collection: Option<String>,
    /// `db.query.summary`, also the span name: `SELECT users`, `BEGIN`.
    pub summary: String,
    /// `db.query.text`: the statement with literals replaced and whitespace collapsed.
    pub text: String,
}

/// Statements already described. Services run a fixed set of query texts, so after warm-up
/// every query is a lookup; the cap keeps generated texts (a varying `IN` list) from
/// growing it without bound.
const CACHE_LIMIT: usize = 512;

pub(crate) fn describe(sql: &str) -> Arc<Statement> {
    static CACHE: OnceLock<RwLock<HashMap<String, Arc<Statement>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(found) = cache.read().ok().and_then(|c| c.get(sql).cloned()) {
        return found;
    }
    let statement = Arc::new(parse(sql));
    if let Ok(mut cache) = cache.write()
        && cache.len() < CACHE_LIMIT
    {
        cache.insert(sql.to_owned(), statement.clone());
    }
    statement
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Literal,
    Symbol(char),
    /// Everything else (placeholders, quoted identifiers, operators), kept as written.
    Other(String),
}

fn parse(sql: &str) -> Statement {
    let tokens = tokenize(sql);
    let operation = operation(&tokens);
    let collection = collection(&tokens, &operation);
    let summary = match &collection {
        Some(table) => format!("{operation} {table}"),
        None => operation.clone(),
    };
    Statement {
        operation,
        collection,
        summary,
        text: render(&tokens),
    }
}

fn tokenize(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '\'' {
            // A string literal; '' inside it is an escaped quote.
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' && chars.get(i + 1) == Some(&'\'') {
                    i += 2;
                } else if chars[i] == '\'' {
                    i += 1;
                    break;
                } else {
                    i += 1;
                }
            }
            tokens.push(Token::Literal);
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            i += 1;
            tokens.push(Token::Other(
                chars[start..i.min(chars.len())].iter().collect(),
            ));
        } else if c == '$' || c == '?' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            tokens.push(Token::Other(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            tokens.push(Token::Literal);
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        } else if matches!(c, '(' | ')' | ',' | ';') {
            tokens.push(Token::Symbol(c));
            i += 1;
        } else {
            let start = i;
            while i < chars.len()
                && !chars[i].is_whitespace()
                && !chars[i].is_alphanumeric()
                && !matches!(
                    chars[i],
                    '(' | ')' | ',' | ';' | '\'' | '"' | '$' | '?' | '_'
                )
            {
                i += 1;
            }
            tokens.push(Token::Other(chars[start..i].iter().collect()));
        }
    }
    tokens
}

fn is_keyword(token: &Token, keyword: &str) -> bool {
    matches!(token, Token::Word(w) if w.eq_ignore_ascii_case(keyword))
}

/// The statement's verb; for `WITH ...` the verb of the main statement after the CTEs.
fn operation(tokens: &[Token]) -> String {
    let first = match tokens.first() {
        Some(Token::Word(w)) => w.to_ascii_uppercase(),
        _ => return "UNKNOWN".to_owned(),
    };
    if first != "WITH" {
        return first;
    }
    let mut depth = 0usize;
    for token in tokens {
        match token {
            Token::Symbol('(') => depth += 1,
            Token::Symbol(')') => depth = depth.saturating_sub(1),
            Token::Word(w)
                if depth == 0
                    && ["SELECT", "INSERT", "UPDATE", "DELETE"]
                        .iter()
                        .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                return w.to_ascii_uppercase();
            }
            _ => {}
        }
    }
    first
}

/// The table named after the clause that says what the statement works on, outside any
/// parentheses (subqueries are not the statement's own target).
fn collection(tokens: &[Token], operation: &str) -> Option<String> {
    let marker = match operation {
        "SELECT" | "DELETE" => "FROM",
        "INSERT" => "INTO",
        "UPDATE" => "UPDATE",
        _ => return None,
    };
    let mut depth = 0usize;
    let mut iter = tokens.iter();
    while let Some(token) = iter.next() {
        match token {
            Token::Symbol('(') => depth += 1,
            Token::Symbol(')') => depth = depth.saturating_sub(1),
            t if depth == 0 && is_keyword(t, marker) => {
                return match iter.next() {
                    Some(Token::Word(name)) => Some(name.clone()),
                    Some(Token::Other(quoted)) if quoted.starts_with('"') => {
                        Some(quoted.trim_matches('"').to_owned())
                    }
                    _ => None,
                };
            }
            _ => {}
        }
    }
    None
}

fn render(tokens: &[Token]) -> String {
    let mut text = String::new();
    for token in tokens {
        let piece = match token {
            Token::Word(w) | Token::Other(w) => w.as_str(),
            Token::Literal => "?",
            Token::Symbol(c) => {
                if matches!(c, ')' | ',' | ';') {
                    // No space before closing punctuation.
                    text.push(*c);
                    continue;
                }
                if *c == '(' {
                    if !text.is_empty() && !text.ends_with('(') {
                        text.push(' ');
                    }
                    text.push('(');
                    continue;
                }
                continue;
            }
        };
        if !text.is_empty() && !text.ends_with('(') {
            text.push(' ');
        }
        text.push_str(piece);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_select_names_its_table_and_keeps_placeholders() {
        let s = parse("SELECT id, email\n  FROM users WHERE id > $1 ORDER BY id LIMIT $2");
        assert_eq!(s.operation, "SELECT");
        assert_eq!(s.collection.as_deref(), Some("users"));
        assert_eq!(s.summary, "SELECT users");
        assert_eq!(
            s.text,
            "SELECT id, email FROM users WHERE id > $1 ORDER BY id LIMIT $2"
        );
    }

    #[test]
    fn literal_values_never_reach_the_text() {
        let s = parse("UPDATE users SET status = 'it''s secret', n = 42 WHERE id = 7 -- who\n");
        assert_eq!(s.summary, "UPDATE users");
        assert_eq!(s.text, "UPDATE users SET status = ?, n = ? WHERE id = ?");
        assert!(!s.text.contains("secret") && !s.text.contains("42"));
    }

    #[test]
    fn inserts_deletes_and_ctes_name_their_target() {
        assert_eq!(
            parse("INSERT INTO kit_outbox (id, data) VALUES ($1, $2)").summary,
            "INSERT kit_outbox"
        );
        assert_eq!(
            parse("DELETE FROM kit_leases WHERE name = $1").summary,
            "DELETE kit_leases"
        );
        let cte = parse("WITH recent AS (SELECT * FROM events) SELECT count(*) FROM recent");
        assert_eq!(cte.operation, "SELECT");
        assert_eq!(cte.summary, "SELECT recent");
        assert_eq!(
            parse("SELECT a FROM (SELECT a FROM inner_t) AS x").collection,
            None
        );
    }

    #[test]
    fn statements_without_a_table_are_named_by_their_verb() {
        assert_eq!(parse("SELECT 1").summary, "SELECT");
        assert_eq!(parse("SELECT 1").text, "SELECT ?");
        assert_eq!(parse("begin").summary, "BEGIN");
        assert_eq!(parse("PRAGMA journal_mode = WAL").summary, "PRAGMA");
        assert_eq!(parse("").summary, "UNKNOWN");
    }

    #[test]
    fn quoted_identifiers_and_comments_are_handled() {
        let s = parse(r#"/* hint */ SELECT "order" FROM "line items" WHERE x = $1"#);
        assert_eq!(s.collection.as_deref(), Some("line items"));
        assert_eq!(s.text, r#"SELECT "order" FROM "line items" WHERE x = $1"#);
    }

    #[test]
    fn described_statements_are_shared() {
        let a = describe("SELECT id FROM cache_probe");
        let b = describe("SELECT id FROM cache_probe");
        assert!(Arc::ptr_eq(&a, &b));
    }
}
