-- A transfer's lots, split by what it does, as on SQLite: the debit side on every transfer,
-- the credit side (a lot for posted credits to a wallet) only on a posted one.
CREATE OR REPLACE FUNCTION ledger_transfer_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE accounts SET
        debits_pending  = debits_pending  + CASE WHEN id = NEW.debit_account_id  AND NEW.state = 'pending' THEN NEW.amount ELSE 0 END,
        credits_pending = credits_pending + CASE WHEN id = NEW.credit_account_id AND NEW.state = 'pending' THEN NEW.amount ELSE 0 END,
        debits_posted   = debits_posted   + CASE WHEN id = NEW.debit_account_id  AND NEW.state = 'posted'  THEN NEW.amount ELSE 0 END,
        credits_posted  = credits_posted  + CASE WHEN id = NEW.credit_account_id AND NEW.state = 'posted'  THEN NEW.amount ELSE 0 END
    WHERE id IN (NEW.debit_account_id, NEW.credit_account_id) AND kind = 'wallet';

    INSERT INTO lot_consumptions (transfer_id, lot_id, amount)
    SELECT NEW.id, id, CASE WHEN drawn_before + remaining <= NEW.amount THEN remaining
                            ELSE NEW.amount - drawn_before END
    FROM (SELECT id, remaining,
                 CAST(SUM(remaining) OVER (ORDER BY id) AS BIGINT) - remaining AS drawn_before
          FROM lots WHERE account_id = NEW.debit_account_id AND remaining > 0
            AND (NEW.draw_lot IS NULL OR id = NEW.draw_lot)) open_lots
    WHERE drawn_before < NEW.amount;

    UPDATE lots SET remaining = remaining - c.amount
    FROM lot_consumptions c WHERE c.transfer_id = NEW.id AND c.lot_id = lots.id;

    IF EXISTS (SELECT 1 FROM accounts WHERE id = NEW.debit_account_id AND kind = 'wallet')
       AND (SELECT COALESCE(SUM(amount), 0) FROM lot_consumptions WHERE transfer_id = NEW.id) <> NEW.amount
    THEN
        RAISE EXCEPTION 'ledger: the lots of the debit wallet do not cover the transfer';
    END IF;

    RETURN NULL;
END;
$$;

CREATE FUNCTION ledger_transfer_credited() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lots (account_id, transfer_id, credits, remaining, created_at)
    SELECT id, NEW.id, NEW.amount, NEW.amount, NEW.created_at
    FROM accounts WHERE id = NEW.credit_account_id AND kind = 'wallet' AND NEW.state = 'posted';
    RETURN NULL;
END;
$$;

CREATE TRIGGER transfer_credited AFTER INSERT ON transfers
    FOR EACH ROW WHEN (NEW.state = 'posted') EXECUTE FUNCTION ledger_transfer_credited();
