-- Wrong link codes typed, per person: past a few in an hour, /link CODE is refused without
-- looking at the code, so that codes cannot be guessed.
CREATE TABLE link_attempts (
    user_id    BIGINT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL
);
CREATE INDEX link_attempts_by_user ON link_attempts (user_id, created_at);
