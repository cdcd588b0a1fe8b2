//! The sockets open on this instance, by user, and fan-out to them. Broadcasting never
//! waits for a socket: each has a bounded queue filled with `try_send`, and a socket whose
//! queue is full is told to close (reason `slow`) and forgotten, so one client that stops
//! reading cannot hold up a room. Sockets on other instances are reached through the bus
//! (see `events.rs`), never through this map.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{self, DropReason};

/// A frame on its way to one socket.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The JSON text, shared by every socket it goes to.
    pub text: Utf8Bytes,
    /// When the message was stored, for the delivery-time histogram; `None` for frames
    /// that are not messages.
    pub sent_at: Option<time::OffsetDateTime>,
}

/// One open socket, as the hub sees it.
struct Entry {
    id: u64,
    queue: mpsc::Sender<Outgoing>,
    /// Tells the socket's task to close, and why.
    close: Option<oneshot::Sender<DropReason>>,
}

/// What a socket's task gets when it registers.
pub struct Registration {
    pub id: u64,
    pub queue: mpsc::Receiver<Outgoing>,
    pub close: oneshot::Receiver<DropReason>,
}

/// The local sockets.
pub struct Hub {
    sockets: Mutex<HashMap<String, Vec<Entry>>>,
    next_id: AtomicU64,
    /// Frames a socket may have waiting before it counts as slow.
    queue: usize,
}

impl Hub {
    pub fn new(queue: usize) -> Self {
        Self {
            sockets: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            queue: queue.max(1),
        }
    }

    /// Adds a socket of `user`.
    pub fn register(&self, user: &str) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue_tx, queue) = mpsc::channel(self.queue);
        let (close_tx, close) = oneshot::channel();
        let entry = Entry {
            id,
            queue: queue_tx,
            close: Some(close_tx),
        };
        self.lock().entry(user.to_owned()).or_default().push(entry);
        Registration { id, queue, close }
    }

    /// Forgets socket `id` of `user` (it closed, or was dropped already).
    pub fn unregister(&self, user: &str, id: u64) {
        let mut sockets = self.lock();
        if let Some(entries) = sockets.get_mut(user) {
            entries.retain(|e| e.id != id);
            if entries.is_empty() {
                sockets.remove(user);
            }
        }
    }

    /// Queues `frame` on every local socket of `users`; returns how many took it. Sockets
    /// with a full queue are dropped as slow.
    pub fn send_to<'a>(&self, users: impl IntoIterator<Item = &'a str>, frame: &Outgoing) -> usize {
        let mut sockets = self.lock();
        let mut queued = 0;
        for user in users {
            let Some(entries) = sockets.get_mut(user) else {
                continue;
            };
            entries.retain_mut(|entry| match entry.queue.try_send(frame.clone()) {
                Ok(()) => {
                    queued += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if let Some(close) = entry.close.take() {
                        let _ = close.send(DropReason::Slow);
                    }
                    metrics::dropped(DropReason::Slow);
                    tracing::info!(
                        user_id = user,
                        socket = entry.id,
                        "socket too slow; closing it"
                    );
                    false
                }
                // Its task has ended and will unregister it.
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            if entries.is_empty() {
                sockets.remove(user);
            }
        }
        queued
    }

    /// Users with a socket open here.
    pub fn has(&self, user: &str) -> bool {
        self.lock().contains_key(user)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Entry>>> {
        // A panic while holding the lock leaves the map consistent (every change is one
        // call), so a poisoned lock is still usable.
        self.sockets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> Outgoing {
        Outgoing {
            text: text.into(),
            sent_at: None,
        }
    }

    #[test]
    fn a_full_queue_drops_only_that_socket() {
        let hub = Hub::new(2);
        let mut slow = hub.register("a");
        let mut fast = hub.register("b");
        for n in 0..2 {
            assert_eq!(hub.send_to(["a", "b"], &frame(&n.to_string())), 2);
            fast.queue.try_recv().unwrap();
        }
        // a's queue is full now: the third frame drops it and still reaches b.
        assert_eq!(hub.send_to(["a", "b"], &frame("2")), 1);
        assert_eq!(slow.close.try_recv().unwrap(), DropReason::Slow);
        assert!(!hub.has("a"));
        assert_eq!(fast.queue.try_recv().unwrap().text.as_str(), "2");
        hub.unregister("b", fast.id);
        assert!(!hub.has("b"));
        let _ = slow.queue.try_recv();
    }
}
