-- What the service façade keeps: quotes awaiting confirmation, where each job's status message
-- is, and how often a person's requests were refused by the content policy.
CREATE TABLE quotes (
    id          INTEGER PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id),
    -- The job the quote would enqueue, as JSON.
    payload     TEXT   NOT NULL,
    cost        BIGINT NOT NULL CHECK (cost > 0),
    created_at  BIGINT NOT NULL,
    -- Set once, when confirmed or cancelled.
    resolved_at BIGINT
);

ALTER TABLE jobs ADD COLUMN status_message TEXT;
ALTER TABLE users ADD COLUMN policy_refusals BIGINT NOT NULL DEFAULT 0;

-- Claims look at the head of each person's line.
CREATE INDEX jobs_lines ON jobs (state, user_id, id);

-- A job and its hold end together: delivered posts the hold, failed or cancelled voids it, in
-- the same statement that ends the job (and only if the hold is still pending).
CREATE TRIGGER job_ended AFTER UPDATE OF state ON jobs
WHEN OLD.state IN ('queued', 'running') AND NEW.state IN ('succeeded', 'failed', 'cancelled')
BEGIN
    UPDATE transfers
    SET state = CASE WHEN NEW.state = 'succeeded' THEN 'posted' ELSE 'voided' END,
        resolved_at = NEW.finished_at
    WHERE id = NEW.hold_id AND state = 'pending';
END;
