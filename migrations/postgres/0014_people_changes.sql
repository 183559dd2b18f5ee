-- Every instance keeps who is behind an identity in memory; a change to a person (terms,
-- privacy, freeze, ban, merge) or to an identity (link, unlink) is announced to all of them on
-- the channel imagegpt_people, with the person's id, when the changing transaction commits.
CREATE FUNCTION announce_person_change() RETURNS trigger AS $$
BEGIN
    IF TG_TABLE_NAME = 'users' THEN
        PERFORM pg_notify('imagegpt_people', COALESCE(NEW.id, OLD.id)::text);
    ELSE
        PERFORM pg_notify('imagegpt_people', COALESCE(NEW.user_id, OLD.user_id)::text);
        IF TG_OP = 'UPDATE' AND NEW.user_id <> OLD.user_id THEN
            PERFORM pg_notify('imagegpt_people', OLD.user_id::text);
        END IF;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER users_announce AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION announce_person_change();
CREATE TRIGGER identities_announce AFTER UPDATE OR DELETE ON identities
    FOR EACH ROW EXECUTE FUNCTION announce_person_change();
