//! The hash chain: what an entry's hash covers and how its fields are encoded for hashing,
//! and the check of one entry against the one before it. Pure functions, no database, so
//! anyone holding an export of the log can verify it the same way.
//!
//! # Encoding (version 1)
//!
//! `hash = hex(SHA-256(encoding))`, lower-case, where the encoding is this sequence of
//! fields, each as an 8-byte big-endian length followed by that many bytes of UTF-8:
//!
//! `"sloop-audit-v1"`, seq (decimal), prev_hash, event_id, topic, type, source, subject,
//! schema_version (decimal), time, time_utc, data, recorded_at.
//!
//! An absent `time_utc` is the length `u64::MAX` with no bytes, which no present value can
//! have. Because every field says how long it is, no two different entries encode to the
//! same bytes: text cannot move from one field to the next unnoticed. The leading name
//! keeps a future encoding from colliding with this one.

use std::fmt::Write;

use sha2::{Digest, Sha256};

/// `prev_hash` of the first entry: there is nothing before it.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Names the encoding; the first field of every hashed sequence.
const ENCODING: &str = "sloop-audit-v1";

/// Marks an absent optional field (no real length comes near it).
const ABSENT: u64 = u64::MAX;

/// One log entry as stored: the event's attributes and data, when the log recorded it,
/// and its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub event_id: String,
    pub topic: String,
    /// CloudEvents `type`.
    pub kind: String,
    pub source: String,
    pub subject: String,
    pub schema_version: i64,
    /// The event's time as received.
    pub time: String,
    /// `time` as fixed-width RFC 3339 UTC, or `None` when it does not parse.
    pub time_utc: Option<String>,
    /// The event's data, JSON text.
    pub data: String,
    /// RFC 3339 UTC time the log appended the entry.
    pub recorded_at: String,
    pub prev_hash: String,
    pub hash: String,
}

impl Entry {
    /// The hash this entry should carry, from its other fields.
    pub fn compute_hash(&self) -> String {
        hex(&Sha256::digest(self.encode()))
    }

    /// The bytes the hash is taken over (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let seq = self.seq.to_string();
        let schema_version = self.schema_version.to_string();
        let fields = [
            Some(ENCODING),
            Some(seq.as_str()),
            Some(self.prev_hash.as_str()),
            Some(self.event_id.as_str()),
            Some(self.topic.as_str()),
            Some(self.kind.as_str()),
            Some(self.source.as_str()),
            Some(self.subject.as_str()),
            Some(schema_version.as_str()),
            Some(self.time.as_str()),
            self.time_utc.as_deref(),
            Some(self.data.as_str()),
            Some(self.recorded_at.as_str()),
        ];
        let size = fields.iter().flatten().map(|f| f.len() + 8).sum::<usize>() + 8;
        let mut out = Vec::with_capacity(size);
        for field in fields {
            match field {
                Some(text) => {
                    out.extend_from_slice(&(text.len() as u64).to_be_bytes());
                    out.extend_from_slice(text.as_bytes());
                }
                None => out.extend_from_slice(&ABSENT.to_be_bytes()),
            }
        }
        out
    }
}

/// Where the chain stands after an entry: the next entry must have `seq + 1` and link
/// to `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub seq: i64,
    pub hash: String,
}

impl Link {
    /// Before the first entry.
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }
}

/// Checks `entry` against the link before it: the number follows on, `prev_hash` is that
/// entry's hash, and the entry's own hash matches its contents. The first problem found is
/// described; checked in that order, so a missing entry shows as the gap it is rather than
/// as the broken link it also causes.
pub fn check(before: &Link, entry: &Entry) -> Result<(), String> {
    let expected = before.seq + 1;
    if entry.seq != expected {
        return Err(format!("seq gap: expected {expected} found {}", entry.seq));
    }
    if entry.prev_hash != before.hash {
        return Err(if before.seq == 0 {
            "prev_hash of the first entry is not the genesis hash (64 zeros)".to_owned()
        } else {
            format!("prev_hash does not match entry {}", before.seq)
        });
    }
    let computed = entry.compute_hash();
    if entry.hash != computed {
        return Err(format!(
            "hash mismatch: stored {} computed {computed}",
            entry.hash
        ));
    }
    Ok(())
}

/// Lower-case hexadecimal.
fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            seq: 1,
            event_id: "0193a5b0-0000-7000-8000-000000000001".into(),
            topic: "sloop.user".into(),
            kind: "sloop.user.created".into(),
            source: "/sloop/user".into(),
            subject: "u-1".into(),
            schema_version: 1,
            time: "2026-12-04T10:00:00.000000Z".into(),
            time_utc: Some("2026-12-04T10:00:00.000000Z".into()),
            data: r#"{"id":"u-1"}"#.into(),
            recorded_at: "2026-12-04T10:00:01.000000Z".into(),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn hashes_are_lower_case_hex_sha256_and_stable() {
        let hash = entry().compute_hash();
        assert_eq!(hash.len(), 64);
        assert!(hash.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_eq!(hash, entry().compute_hash());
        // The stored hash is not part of what is hashed.
        let mut stored = entry();
        stored.hash = hash.clone();
        assert_eq!(stored.compute_hash(), hash);
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(GENESIS_HASH.len(), 64);
    }

    #[test]
    fn text_moved_between_fields_changes_the_hash() {
        let mut a = entry();
        a.source = "/sloop/user".into();
        a.subject = "ab".into();
        let mut b = entry();
        b.source = "/sloop/usera".into();
        b.subject = "b".into();
        // Plain concatenation would be the same for both.
        assert_eq!(
            format!("{}{}", a.source, a.subject),
            format!("{}{}", b.source, b.subject)
        );
        assert_ne!(a.encode(), b.encode());
        assert_ne!(a.compute_hash(), b.compute_hash());

        // Data ending in what looks like a length prefix and a next field does not
        // impersonate that field either.
        let mut c = entry();
        c.data = "{}".into();
        c.recorded_at = "x".into();
        let mut d = entry();
        d.data = format!("{{}}{}x", String::from_utf8_lossy(&1u64.to_be_bytes()));
        d.recorded_at = String::new();
        assert_ne!(c.compute_hash(), d.compute_hash());
    }

    #[test]
    fn an_absent_time_differs_from_an_empty_one() {
        let mut absent = entry();
        absent.time_utc = None;
        let mut empty = entry();
        empty.time_utc = Some(String::new());
        assert_ne!(absent.compute_hash(), empty.compute_hash());
    }

    #[test]
    fn every_field_is_covered() {
        let base = entry().compute_hash();
        let changes: [fn(&mut Entry); 12] = [
            |e| e.seq = 2,
            |e| e.prev_hash = "1".repeat(64),
            |e| e.event_id.push('x'),
            |e| e.topic.push('x'),
            |e| e.kind.push('x'),
            |e| e.source.push('x'),
            |e| e.subject.push('x'),
            |e| e.schema_version = 2,
            |e| e.time.push('x'),
            |e| e.time_utc = None,
            |e| e.data.push(' '),
            |e| e.recorded_at.push('x'),
        ];
        for (n, change) in changes.iter().enumerate() {
            let mut changed = entry();
            change(&mut changed);
            assert_ne!(changed.compute_hash(), base, "change {n} went unnoticed");
        }
    }

    #[test]
    fn check_names_the_first_problem() {
        let mut first = entry();
        first.hash = first.compute_hash();
        assert_eq!(check(&Link::genesis(), &first), Ok(()));

        let mut second = entry();
        second.seq = 2;
        second.event_id.push('2');
        second.prev_hash = first.hash.clone();
        second.hash = second.compute_hash();
        let after_first = Link {
            seq: 1,
            hash: first.hash.clone(),
        };
        assert_eq!(check(&after_first, &second), Ok(()));

        assert_eq!(
            check(&Link::genesis(), &second).unwrap_err(),
            "seq gap: expected 1 found 2"
        );
        let mut relinked = second.clone();
        relinked.prev_hash = GENESIS_HASH.into();
        assert_eq!(
            check(&after_first, &relinked).unwrap_err(),
            "prev_hash does not match entry 1"
        );
        let mut edited = second.clone();
        edited.data = r#"{"id":"u-2"}"#.into();
        let problem = check(&after_first, &edited).unwrap_err();
        assert!(
            problem.starts_with(&format!("hash mismatch: stored {} computed ", second.hash)),
            "{problem}"
        );
        let mut unlinked = first.clone();
        unlinked.prev_hash = "1".repeat(64);
        assert!(
            check(&Link::genesis(), &unlinked)
                .unwrap_err()
                .contains("genesis")
        );
    }
}
