-- Interactions acknowledged by some instance, with the short-lived token that answers them
-- (Discord's last 15 minutes), so that whichever instance finishes the job answers through
-- the interaction instead of posting with the bot token. Rows are purged once expired.
CREATE TABLE interactions (
    id           TEXT   PRIMARY KEY,
    platform     TEXT   NOT NULL,
    token        TEXT   NOT NULL,
    kind         TEXT   NOT NULL,
    upload_limit BIGINT NOT NULL,
    person       TEXT   NOT NULL,
    channel      TEXT   NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX interactions_by_expiry ON interactions (expires_at);
