//! What auth does with the user service's events: a suspended or deleted user can no
//! longer sign in or refresh (their refresh tokens are revoked), and a changed email is the
//! one to sign in with.

use futures::future::BoxFuture;
use sloop_events::user as events;
use sloop_kit::Tx;
use sloop_kit::clock::now_millis;
use sloop_kit::{Event, Handler, HandlerError};

use crate::store::{self, AccountStatus, StoreError};

/// The `auth` consumer of topic `sloop.user`.
pub struct UserEvents;

impl Handler for UserEvents {
    fn handle<'a>(
        &'a self,
        event: &'a Event,
        tx: &'a mut Tx,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            if event.kind == events::STATUS_CHANGED.name {
                let data: events::UserStatusChanged = event.decode(events::STATUS_CHANGED)?;
                let status = match data.status {
                    events::UserStatus::Active => AccountStatus::Active,
                    events::UserStatus::Suspended => AccountStatus::Suspended,
                    events::UserStatus::Deleted => AccountStatus::Deleted,
                };
                let now = now_millis();
                let changed = store::apply_status(tx, &data.id, status, data.version, now)
                    .await
                    .map_err(retry)?;
                if status != AccountStatus::Active {
                    let revoked = store::revoke_user(tx, &data.id, now).await.map_err(retry)?;
                    tracing::info!(user_id = %data.id, status = status.as_str(), changed, revoked, "account blocked");
                }
            } else if event.kind == events::UPDATED.name {
                let data: events::UserUpdated = event.decode(events::UPDATED)?;
                store::apply_email(tx, &data.id, &data.email, data.version, now_millis())
                    .await
                    .map_err(retry)?;
            }
            Ok(())
        })
    }
}

fn retry(err: StoreError) -> HandlerError {
    HandlerError::Retry(err.to_string())
}
