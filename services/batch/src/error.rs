//! What can go wrong in the batch service, in its own terms; `lib.rs` turns each into the
//! problem document a client sees.

/// An error of the batch library.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("there is no job `{0}`; the jobs are {jobs}", jobs = crate::jobs::Job::ALL.map(|j| j.name()).join(", "))]
    UnknownJob(String),
    #[error("there is no run {0}")]
    RunNotFound(String),
    #[error("run {id} has no report: {reason}")]
    NoReport { id: String, reason: &'static str },
    #[error("{job} is running now ({detail}); trigger it again once that run has finished")]
    Busy { job: String, detail: String },
    /// The run stopped because this instance no longer holds its job's lease.
    #[error("lost the job's lease: {0}")]
    LeaseLost(String),
    /// Stored data that does not read back (edited by hand, or written by a newer version).
    #[error("stored data does not read back: {0}")]
    Data(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}
