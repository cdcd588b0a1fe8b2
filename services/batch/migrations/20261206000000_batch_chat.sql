-- Chat activity in the batch read model (ChatMessageSent): messages and mentions per day and
-- room, and who sent any message on a day (so a day's active senders are counted once
-- however many rooms they wrote in).
CREATE TABLE batch_daily_chat (
    day TEXT NOT NULL,
    room_id TEXT NOT NULL,
    messages BIGINT NOT NULL,
    mentions BIGINT NOT NULL,
    PRIMARY KEY (day, room_id)
);

CREATE TABLE batch_daily_chat_senders (
    day TEXT NOT NULL,
    sender_id TEXT NOT NULL,
    PRIMARY KEY (day, sender_id)
);
