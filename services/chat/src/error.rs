//! What can go wrong in the chat service, in its own terms; `lib.rs` turns each into the
//! problem document a client sees.

/// An error of the chat library.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("there is no room {0}")]
    RoomNotFound(String),
    /// Reading or posting needs membership; joining is open to every signed-in user.
    #[error(
        "you are not a member of room {0}; join it first with PUT /rooms/{0}/members/<your user id>"
    )]
    NotMember(String),
    #[error("{user} is not a member of room {room}")]
    NoSuchMember { room: String, user: String },
    /// Stored data that does not read back (edited by hand, or written by a newer version).
    #[error("stored data does not read back: {0}")]
    Data(String),
    #[error("outbox: {0}")]
    Outbox(#[from] sloop_kit::outbox::OutboxError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}
