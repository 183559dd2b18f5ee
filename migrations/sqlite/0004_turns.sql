-- Fair turns that cost the same however long the queue is. A job's turn is one after the later
-- of its owner's last open job and the turn now being served, so a newcomer joins the current
-- round; workers take the lowest turn (ties by age) through one index, and a job's place in the
-- queue is a range count on the same index. The index holds queued jobs only, so it stays small
-- however many jobs have ended, and planners prefer it even for generic (prepared) plans.
ALTER TABLE jobs ADD COLUMN turn BIGINT NOT NULL DEFAULT 0;
CREATE INDEX jobs_queue ON jobs (turn, id) WHERE state = 'queued';
DROP INDEX jobs_lines;
