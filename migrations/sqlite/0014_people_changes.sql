-- Every instance keeps who is behind an identity in memory. Changes made by other processes on
-- this file (the operator's `imagegpt admin …`) are logged here by these triggers, with the
-- person's id, and each serving process reads the log a few times a second to forget them.
CREATE TABLE people_changes (
    seq     INTEGER PRIMARY KEY,
    user_id BIGINT NOT NULL
);
CREATE TRIGGER users_changed AFTER UPDATE ON users BEGIN
    INSERT INTO people_changes (user_id) VALUES (NEW.id);
END;
CREATE TRIGGER users_deleted AFTER DELETE ON users BEGIN
    INSERT INTO people_changes (user_id) VALUES (OLD.id);
END;
CREATE TRIGGER identities_changed AFTER UPDATE ON identities BEGIN
    INSERT INTO people_changes (user_id) VALUES (OLD.user_id);
    INSERT INTO people_changes (user_id) VALUES (NEW.user_id);
END;
CREATE TRIGGER identities_deleted AFTER DELETE ON identities BEGIN
    INSERT INTO people_changes (user_id) VALUES (OLD.user_id);
END;
