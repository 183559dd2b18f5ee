-- People, their platform identities, and the double-entry credit ledger.
-- Amounts and times are BIGINT (credits; unix milliseconds) so both backends read them alike.

CREATE TABLE users (
    id                INTEGER PRIMARY KEY,
    created_at        BIGINT NOT NULL,
    terms_version     TEXT,
    terms_accepted_at BIGINT,
    -- NULL: the configured default; 1: opted out of anonymised reuse (terms 5.4); 0: opted in.
    privacy_opt_out   BIGINT CHECK (privacy_opt_out IN (0, 1))
);

CREATE TABLE identities (
    platform    TEXT   NOT NULL CHECK (platform IN ('telegram', 'discord', 'console')),
    external_id TEXT   NOT NULL,
    user_id     BIGINT NOT NULL REFERENCES users (id),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (platform, external_id)
);
CREATE INDEX identities_by_user ON identities (user_id);

CREATE TABLE accounts (
    id              INTEGER PRIMARY KEY,
    kind            TEXT   NOT NULL CHECK (kind IN ('wallet', 'system')),
    -- The owner of a wallet; NULL for system accounts.
    user_id         BIGINT UNIQUE REFERENCES users (id),
    -- The name of a system account; NULL for wallets.
    code            TEXT UNIQUE,
    -- Running totals, kept for wallets only: system accounts take part in nearly every transfer,
    -- so their totals are summed from their transfers instead of locking one row for everyone.
    debits_posted   BIGINT NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted  BIGINT NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_pending  BIGINT NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_pending BIGINT NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    CHECK ((kind = 'wallet') = (user_id IS NOT NULL) AND (kind = 'system') = (code IS NOT NULL)),
    -- The database itself refuses to let a wallet spend or hold more than it has.
    CONSTRAINT wallet_never_negative
        CHECK (kind <> 'wallet' OR credits_posted - debits_posted - debits_pending >= 0)
);

INSERT INTO accounts (kind, code) VALUES
    ('system', 'card_sales'),
    ('system', 'stars_sales'),
    ('system', 'grants'),
    ('system', 'generation_revenue'),
    ('system', 'refunds');

CREATE TABLE transfers (
    id                INTEGER PRIMARY KEY,
    idempotency_key   TEXT   NOT NULL UNIQUE,
    debit_account_id  BIGINT NOT NULL REFERENCES accounts (id),
    credit_account_id BIGINT NOT NULL REFERENCES accounts (id),
    amount            BIGINT NOT NULL CHECK (amount > 0),
    kind              TEXT   NOT NULL,
    state             TEXT   NOT NULL CHECK (state IN ('pending', 'posted', 'voided')),
    -- 1 when the transfer was made as a hold (two-phase), 0 when posted at once.
    two_phase         BIGINT NOT NULL CHECK (two_phase IN (0, 1)),
    memo              TEXT,
    created_at        BIGINT NOT NULL,
    resolved_at       BIGINT,
    CHECK (debit_account_id <> credit_account_id),
    CHECK ((state = 'pending') = (resolved_at IS NULL))
);
CREATE INDEX transfers_by_debit ON transfers (debit_account_id);
CREATE INDEX transfers_by_credit ON transfers (credit_account_id);

-- Every posted credit into a wallet is a lot; spending consumes the oldest lot first, so a
-- refund can tell how much of a given purchase is unused.
CREATE TABLE lots (
    id          INTEGER PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES accounts (id),
    transfer_id BIGINT NOT NULL UNIQUE REFERENCES transfers (id),
    credits     BIGINT NOT NULL CHECK (credits > 0),
    remaining   BIGINT NOT NULL CHECK (remaining >= 0 AND remaining <= credits),
    created_at  BIGINT NOT NULL
);
CREATE INDEX lots_open ON lots (account_id, id) WHERE remaining > 0;

-- Which lots a wallet debit drew from; removed when a hold is voided.
CREATE TABLE lot_consumptions (
    transfer_id BIGINT NOT NULL REFERENCES transfers (id),
    lot_id      BIGINT NOT NULL REFERENCES lots (id),
    amount      BIGINT NOT NULL CHECK (amount > 0),
    PRIMARY KEY (transfer_id, lot_id)
) WITHOUT ROWID;

-- The ledger's rules live in the database, so that no code path can move a balance without a
-- transfer: a new transfer moves the wallets' running totals (the CHECK above refuses an
-- overdraft, which undoes the whole statement) and draws a wallet debit from the oldest lots;
-- posting or voiding a hold settles it; credits posted into a wallet open a lot.
CREATE TRIGGER transfer_created AFTER INSERT ON transfers
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
    FROM (SELECT id, remaining, SUM(remaining) OVER (ORDER BY id) - remaining AS drawn_before
          FROM lots WHERE account_id = NEW.debit_account_id AND remaining > 0)
    WHERE drawn_before < NEW.amount;

    UPDATE lots SET remaining = remaining -
        (SELECT c.amount FROM lot_consumptions c WHERE c.transfer_id = NEW.id AND c.lot_id = lots.id)
    WHERE id IN (SELECT lot_id FROM lot_consumptions WHERE transfer_id = NEW.id);

    SELECT RAISE(ABORT, 'ledger: the lots of the debit wallet do not cover the transfer')
    WHERE EXISTS (SELECT 1 FROM accounts WHERE id = NEW.debit_account_id AND kind = 'wallet')
      AND (SELECT COALESCE(SUM(amount), 0) FROM lot_consumptions WHERE transfer_id = NEW.id) <> NEW.amount;

    INSERT INTO lots (account_id, transfer_id, credits, remaining, created_at)
    SELECT id, NEW.id, NEW.amount, NEW.amount, NEW.created_at
    FROM accounts WHERE id = NEW.credit_account_id AND kind = 'wallet' AND NEW.state = 'posted';
END;

CREATE TRIGGER transfer_resolved AFTER UPDATE OF state ON transfers
WHEN OLD.state = 'pending' AND NEW.state IN ('posted', 'voided')
BEGIN
    UPDATE accounts SET
        debits_pending  = debits_pending  - CASE WHEN id = NEW.debit_account_id  THEN NEW.amount ELSE 0 END,
        credits_pending = credits_pending - CASE WHEN id = NEW.credit_account_id THEN NEW.amount ELSE 0 END,
        debits_posted   = debits_posted   + CASE WHEN id = NEW.debit_account_id  AND NEW.state = 'posted' THEN NEW.amount ELSE 0 END,
        credits_posted  = credits_posted  + CASE WHEN id = NEW.credit_account_id AND NEW.state = 'posted' THEN NEW.amount ELSE 0 END
    WHERE id IN (NEW.debit_account_id, NEW.credit_account_id) AND kind = 'wallet';

    UPDATE lots SET remaining = remaining +
        (SELECT c.amount FROM lot_consumptions c WHERE c.transfer_id = NEW.id AND c.lot_id = lots.id)
    WHERE NEW.state = 'voided'
      AND id IN (SELECT lot_id FROM lot_consumptions WHERE transfer_id = NEW.id);

    DELETE FROM lot_consumptions WHERE NEW.state = 'voided' AND transfer_id = NEW.id;

    INSERT INTO lots (account_id, transfer_id, credits, remaining, created_at)
    SELECT id, NEW.id, NEW.amount, NEW.amount, NEW.resolved_at
    FROM accounts WHERE id = NEW.credit_account_id AND kind = 'wallet' AND NEW.state = 'posted';
END;

-- A transfer is history: it only ever goes from pending to posted or voided, and is never
-- deleted. (The memo may be rewritten, to anonymise it.)
CREATE TRIGGER transfer_is_history BEFORE UPDATE ON transfers
WHEN NEW.id <> OLD.id
  OR NEW.idempotency_key <> OLD.idempotency_key
  OR NEW.debit_account_id <> OLD.debit_account_id
  OR NEW.credit_account_id <> OLD.credit_account_id
  OR NEW.amount <> OLD.amount
  OR NEW.kind <> OLD.kind
  OR NEW.two_phase <> OLD.two_phase
  OR NEW.created_at <> OLD.created_at
  OR (NEW.state <> OLD.state AND NOT (OLD.state = 'pending' AND NEW.state IN ('posted', 'voided')))
BEGIN
    SELECT RAISE(ABORT, 'ledger: a transfer only goes from pending to posted or voided');
END;

CREATE TRIGGER transfer_is_kept BEFORE DELETE ON transfers
BEGIN
    SELECT RAISE(ABORT, 'ledger: transfers are never deleted');
END;
