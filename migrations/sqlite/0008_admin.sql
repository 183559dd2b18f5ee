-- Operations: banned people, and every admin action with who, what and when.
ALTER TABLE users ADD COLUMN banned_at BIGINT;

CREATE TABLE admin_actions (
    id         INTEGER PRIMARY KEY,
    -- The admin's identity (`telegram:1`) or `cli` for the operator's command line.
    actor      TEXT   NOT NULL,
    action     TEXT   NOT NULL,
    -- The person or refund acted on, when there is one.
    target     TEXT,
    detail     TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX admin_actions_by_time ON admin_actions (created_at);
