-- Retention deletes by age, oldest first: published outbox rows and the ids of applied
-- events.
CREATE INDEX kit_outbox_published ON kit_outbox (published_at_ms) WHERE published_at_ms IS NOT NULL;
CREATE INDEX kit_processed_events_age ON kit_processed_events (processed_at_ms);
