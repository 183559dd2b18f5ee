-- Notices are records (a kind and its figures, as JSON), put into words when they are sent, so
-- that no wording is kept in the database. Notices queued before this keep their words as a
-- `worded` record.
ALTER TABLE notices RENAME COLUMN text TO record;
UPDATE notices SET record = json_object('kind', 'worded', 'text', record);
