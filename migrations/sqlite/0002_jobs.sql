-- The durable job queue. A job is created in the same transaction as the hold on its cost, and
-- ends exactly once: succeeded (hold posted), failed or cancelled (hold voided).
CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY,
    user_id          BIGINT NOT NULL REFERENCES users (id),
    hold_id          BIGINT NOT NULL UNIQUE REFERENCES transfers (id),
    operation        TEXT   NOT NULL,
    -- The request's parameters as JSON: prompt, options, where to deliver. Never media bytes.
    payload          TEXT   NOT NULL,
    state            TEXT   NOT NULL
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL CHECK (max_attempts > 0),
    -- Not claimed before this time (unix ms): backoff after a transient failure.
    run_after        BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    cancel_requested BIGINT NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    provider         TEXT,
    provider_job_id  TEXT,
    failure          TEXT,
    created_at       BIGINT NOT NULL,
    finished_at      BIGINT,
    CHECK ((state = 'running') = (lease_owner IS NOT NULL)),
    CHECK ((state IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL))
);
CREATE INDEX jobs_open ON jobs (state, run_after) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_by_user ON jobs (user_id, state);
