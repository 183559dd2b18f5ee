-- What the provider that made a job's result charged for it, in millionths of a US dollar, at
-- its configured (published) price; NULL for jobs that made nothing and for older jobs.
ALTER TABLE jobs ADD COLUMN provider_cost_micros BIGINT CHECK (provider_cost_micros >= 0);
