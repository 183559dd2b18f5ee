-- A wallet debit that the wallet's oldest open lot covers alone, as nearly every one is (a
-- generation costs a few credits; a lot is a purchase or a grant), is drawn from that lot with
-- one update and one consumption, without the running sum over the wallet's open lots that a
-- debit spread over several lots needs. What is drawn is the same either way: the oldest open
-- lot (or the one lot a transfer names) pays all it can first. Measured with pgbench's
-- per-statement latencies (`-M prepared`, one client) on a hold and its post: the hold 0.36 ->
-- 0.31 ms, the pair 1,540 -> 1,715 per second. SQLite keeps its one way: the same shortcut in
-- its trigger (which has no IF, so both inserts must be written) made a hold slower there,
-- 17.8 -> 19.6 µs (Python's sqlite3, 20,000 holds, 16 to a transaction).
CREATE OR REPLACE FUNCTION ledger_transfer_created() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    oldest BIGINT;
BEGIN
    UPDATE accounts SET
        debits_pending  = debits_pending  + CASE WHEN id = NEW.debit_account_id  AND NEW.state = 'pending' THEN NEW.amount ELSE 0 END,
        credits_pending = credits_pending + CASE WHEN id = NEW.credit_account_id AND NEW.state = 'pending' THEN NEW.amount ELSE 0 END,
        debits_posted   = debits_posted   + CASE WHEN id = NEW.debit_account_id  AND NEW.state = 'posted'  THEN NEW.amount ELSE 0 END,
        credits_posted  = credits_posted  + CASE WHEN id = NEW.credit_account_id AND NEW.state = 'posted'  THEN NEW.amount ELSE 0 END
    WHERE id IN (NEW.debit_account_id, NEW.credit_account_id) AND kind = 'wallet';

    UPDATE lots SET remaining = remaining - NEW.amount
    WHERE id = (SELECT id FROM lots
                WHERE account_id = NEW.debit_account_id AND remaining > 0
                  AND (NEW.draw_lot IS NULL OR id = NEW.draw_lot)
                ORDER BY id LIMIT 1)
      AND remaining >= NEW.amount
    RETURNING id INTO oldest;
    IF oldest IS NOT NULL THEN
        INSERT INTO lot_consumptions (transfer_id, lot_id, amount) VALUES (NEW.id, oldest, NEW.amount);
        RETURN NULL;
    END IF;

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
