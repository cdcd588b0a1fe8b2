//! Verification of the whole log: a walk from the first entry to the last, a page at a
//! time so memory stays flat however long the log is, checking that every entry follows
//! on from the one before and matches its hash.

use sloop_kit::Database;

use crate::chain::{self, Link};
use crate::model::{Broken, BrokenEntry, Intact, Verification};
use crate::store::{self, Filter, StoreError};

/// Entries read per query.
const PAGE: u32 = 500;

/// Walks the chain and says whether it is intact, or where it first breaks. Entries
/// appended while it runs are checked too, up to the last one it finds.
pub async fn verify(db: &Database) -> Result<Verification, StoreError> {
    let everything = Filter::default();
    let mut link = Link::genesis();
    let mut checked: i64 = 0;
    loop {
        // After a break the walk stops, so the last entry read is always `link.seq`.
        let page = store::list(db, &everything, link.seq, PAGE).await?;
        let full = page.len() == PAGE as usize;
        for entry in page {
            checked += 1;
            if let Err(problem) = chain::check(&link, &entry) {
                return Ok(Verification::Broken(Broken {
                    intact: false,
                    entries_checked: checked,
                    first_broken: BrokenEntry {
                        seq: entry.seq,
                        event_id: entry.event_id,
                        problem,
                    },
                }));
            }
            link = Link {
                seq: entry.seq,
                hash: entry.hash,
            };
        }
        if !full {
            return Ok(Verification::Intact(Intact {
                intact: true,
                entries: checked,
                last_hash: link.hash,
            }));
        }
    }
}
