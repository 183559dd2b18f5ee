-- What each instance let through of each person's requests, as running totals: instances add
-- theirs and read the others' every moment, so that a person's request limit holds across every
-- instance rather than per instance. Unlogged: these are counts of the last minutes, cheap to
-- lose in a crash (a lost count only lets a few more requests through), not worth a WAL fsync.
CREATE UNLOGGED TABLE let_through (
    identity TEXT NOT NULL,
    instance TEXT NOT NULL,
    total BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (identity, instance)
);
CREATE INDEX let_through_recent ON let_through (updated_at);
