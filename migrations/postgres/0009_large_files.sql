-- Results too large for a platform's upload limit, kept here until their link expires so that
-- any instance can serve the link. The link carries the id and the secret token.
CREATE TABLE large_files (
    id         TEXT   PRIMARY KEY,
    token      TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    mime       TEXT   NOT NULL,
    bytes      BYTEA   NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX large_files_by_expiry ON large_files (expires_at);
