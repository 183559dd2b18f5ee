-- Read on every enqueue, each now a seek in an index however long the queue: a person's last
-- turn and their queued count, by (person, state, turn), replacing (person, state), which made
-- them a scan of the person's jobs; and the jobs ahead in the queue, counted from an index that
-- holds every column the count reads (state, turn, id), so no table row is visited.
CREATE INDEX jobs_by_user_turn ON jobs (user_id, state, turn);
DROP INDEX jobs_by_user;
CREATE INDEX jobs_queue_order ON jobs (state, turn, id) WHERE state = 'queued';
DROP INDEX jobs_queue;
