-- Read on every claim and every idle worker's look for work: the running jobs, by person and
-- lease. `jobs_open` (state IN ('queued', 'running')) cannot serve `state = 'running'` on
-- SQLite, whose planner does not see that one implies the other, so both reads scanned every
-- job ever run. This index holds only the running set, which the running caps keep small.
CREATE INDEX jobs_running ON jobs (user_id, lease_expires_at) WHERE state = 'running';
