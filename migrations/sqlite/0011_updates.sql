-- Platform updates taken for handling, so that each is handled at most once however often the
-- platform delivers it and whichever instance receives it. Telegram keeps an update for at
-- most 24 hours; older rows are purged.
CREATE TABLE taken_updates (
    key      TEXT   PRIMARY KEY,
    taken_at BIGINT NOT NULL
);
CREATE INDEX taken_updates_by_age ON taken_updates (taken_at);

-- Where a stream of updates stands (Telegram long polling: the next offset), so a restarted
-- or new leader goes on from there instead of from what Telegram has not yet been told.
CREATE TABLE cursors (
    stream     TEXT   PRIMARY KEY,
    position   BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
