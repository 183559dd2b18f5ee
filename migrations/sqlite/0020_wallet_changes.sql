-- A serving process keeps wallets' balances in memory. Every change to a wallet's running totals
-- (a hold, a post or void, a credit, a merge) or its removal is logged here with the account's
-- id: the process's writer reads the log after each of its writes, before answering them, and
-- every serving process reads it a few times a second for the changes of other processes on
-- this file (the operator's `imagegpt admin …`). PostgreSQL keeps no balances in memory.
CREATE TABLE wallet_changes (
    seq        INTEGER PRIMARY KEY,
    account_id BIGINT NOT NULL
);
CREATE TRIGGER wallet_changed AFTER UPDATE ON accounts WHEN NEW.kind = 'wallet' BEGIN
    INSERT INTO wallet_changes (account_id) VALUES (NEW.id);
END;
CREATE TRIGGER wallet_deleted AFTER DELETE ON accounts WHEN OLD.kind = 'wallet' BEGIN
    INSERT INTO wallet_changes (account_id) VALUES (OLD.id);
END;
