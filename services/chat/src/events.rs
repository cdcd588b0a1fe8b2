//! Fan-out: how a message reaches members connected to any instance. Every instance
//! consumes `sloop.chat` in a consumer group of its own (`chat-<instance id>`), so every
//! instance sees every event and pushes it to the sockets it holds; nothing is shared
//! between instances but the database and the bus.
//!
//! Members are looked up per event, so a socket receives rooms joined after it opened.
//! Events from before the instance started are history, not news: clients read them over
//! HTTP. A new group on Kafka starts at the earliest offset, so nothing sent after the start
//! is missed while the group joins; the kit passes the older events over without a
//! transaction, so the topic is not replayed into sockets nor into the database.

use std::sync::Arc;

use futures::future::BoxFuture;
use sloop_events::chat as chat_events;
use sloop_kit::clock::parse_rfc3339;
use sloop_kit::{Consumer, Event, Handler, HandlerError, Tx};

use crate::hub::{Hub, Outgoing};
use crate::model::{Frame, Message};
use crate::socket::frame_text;
use crate::store;

/// This instance's consumer group.
pub fn group(instance: &str) -> String {
    format!("chat-{instance}")
}

/// The fan-out consumer of `sloop.chat` for this instance.
pub fn consumer(instance: &str, hub: Arc<Hub>) -> Consumer {
    Consumer::new(group(instance), &[chat_events::TOPIC], Fanout { hub })
        .skipping_events_before(time::OffsetDateTime::now_utc())
}

/// Pushes chat events to local sockets.
pub struct Fanout {
    hub: Arc<Hub>,
}

impl Handler for Fanout {
    fn handle<'a>(
        &'a self,
        event: &'a Event,
        tx: &'a mut Tx,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            if event.kind == chat_events::MESSAGE_SENT.name {
                let data: chat_events::ChatMessageSent = event.decode(chat_events::MESSAGE_SENT)?;
                self.message(data, tx).await
            } else if event.kind == chat_events::PRESENCE_CHANGED.name {
                let data: chat_events::ChatPresenceChanged =
                    event.decode(chat_events::PRESENCE_CHANGED)?;
                self.presence(data, tx).await
            } else {
                Ok(())
            }
        })
    }
}

impl Fanout {
    async fn message(
        &self,
        data: chat_events::ChatMessageSent,
        tx: &mut Tx,
    ) -> Result<(), HandlerError> {
        let members = store::member_ids(tx, &data.room_id).await?;
        if !members.iter().any(|m| self.hub.has(m)) {
            return Ok(());
        }
        let sent_at = parse_rfc3339(&data.sent_at);
        let frame = Frame::Message(Message {
            id: data.message_id,
            room_id: data.room_id,
            sender_id: data.sender_id,
            text: data.text,
            mentions: data.mentions,
            sent_at: data.sent_at,
        });
        let outgoing = Outgoing {
            text: frame_text(&frame),
            sent_at,
        };
        self.hub
            .send_to(members.iter().map(String::as_str), &outgoing);
        Ok(())
    }

    /// Tells the user's room mates here, once per shared room.
    async fn presence(
        &self,
        data: chat_events::ChatPresenceChanged,
        tx: &mut Tx,
    ) -> Result<(), HandlerError> {
        let mates = store::room_mates(tx, &data.user_id).await?;
        for (room, mate) in mates {
            if mate == data.user_id || !self.hub.has(&mate) {
                continue;
            }
            let frame = Frame::Presence {
                room_id: room,
                user_id: data.user_id.clone(),
                online: data.online,
            };
            let outgoing = Outgoing {
                text: frame_text(&frame),
                sent_at: None,
            };
            self.hub.send_to([mate.as_str()], &outgoing);
        }
        Ok(())
    }
}
