-- The chat service's tables: rooms, their members, their messages, and the WebSocket
-- connections open on each instance (presence). Portable SQL: the same file runs on SQLite
-- and PostgreSQL. Ids are UUIDv7 text, so ordering by id is ordering by creation (cursor
-- pagination); times shown to clients are fixed-width RFC 3339 UTC text.

CREATE TABLE chat_rooms (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE chat_members (
    room_id TEXT NOT NULL REFERENCES chat_rooms (id),
    user_id TEXT NOT NULL,
    joined_at TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- "The rooms of a user": the socket's welcome and `GET /rooms?mine=true`.
CREATE INDEX chat_members_user ON chat_members (user_id, room_id);

CREATE TABLE chat_messages (
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL REFERENCES chat_rooms (id),
    sender_id TEXT NOT NULL,
    text TEXT NOT NULL,
    -- The mentioned members' ids, as a JSON array of strings.
    mentions TEXT NOT NULL,
    sent_at TEXT NOT NULL
);

CREATE INDEX chat_messages_room_id ON chat_messages (room_id, id);

-- One row per open WebSocket, written by the instance holding it. Each instance refreshes
-- `seen_at_ms` of its rows every heartbeat, so the rows of an instance that died stop
-- counting (and are swept) once they are older than a few heartbeats.
CREATE TABLE chat_connections (
    id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    connected_at_ms BIGINT NOT NULL,
    seen_at_ms BIGINT NOT NULL
);

CREATE INDEX chat_connections_user ON chat_connections (user_id);
CREATE INDEX chat_connections_instance ON chat_connections (instance_id);
