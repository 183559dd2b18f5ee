-- One wallet across platforms (terms 3.4): one-time link codes, and whom a joined person became.
CREATE TABLE link_codes (
    code       TEXT   PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX link_codes_by_user ON link_codes (user_id);

ALTER TABLE users ADD COLUMN merged_into BIGINT REFERENCES users (id);
