-- Read on every claim and every idle worker's look for work: the running jobs, by person and
-- lease (as on SQLite, where `jobs_open` could not serve them). Only the running set, which
-- the running caps keep small.
CREATE INDEX jobs_running ON jobs (user_id, lease_expires_at) WHERE state = 'running';
