-- Whom a notice is for (the identity that paid), so a platform can reach them privately: an
-- ephemeral message while their interaction lasts, a DM otherwise.
ALTER TABLE notices ADD COLUMN recipient TEXT;
