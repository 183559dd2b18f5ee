-- What each instance let through of each person's requests (see the PostgreSQL migration). One
-- process serves a SQLite file, so nothing reads this table there; it keeps the schemas alike.
CREATE TABLE let_through (
    identity TEXT NOT NULL,
    instance TEXT NOT NULL,
    total INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (identity, instance)
);
CREATE INDEX let_through_recent ON let_through (updated_at);
