-- Payments: purchases (one per order, on Stripe or Telegram Stars), the Stripe events seen,
-- refunds, the notices outbox, frozen wallets, and debits drawn from one chosen lot.

-- Set when a payment dispute froze the wallet: no spending, buying or refunds until cleared.
ALTER TABLE users ADD COLUMN frozen_at BIGINT;

-- A refund takes back the unused credits of one purchase, not the oldest ones: such a debit
-- names the lot it draws from.
ALTER TABLE transfers ADD COLUMN draw_lot BIGINT REFERENCES lots (id);

DROP TRIGGER transfer_created;
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
          FROM lots WHERE account_id = NEW.debit_account_id AND remaining > 0
            AND (NEW.draw_lot IS NULL OR id = NEW.draw_lot))
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

-- One order of a pack: opened when the person picks a rail, paid (and credited, once) when the
-- payment arrives. Amounts are in the currency's smallest unit (cents; whole Stars for XTR).
CREATE TABLE purchases (
    id                     INTEGER PRIMARY KEY,
    user_id                BIGINT NOT NULL REFERENCES users (id),
    -- The identity that ordered (`telegram:42`): the only one who may pay a Stars invoice.
    payer                  TEXT   NOT NULL,
    pack                   TEXT   NOT NULL,
    credits                BIGINT NOT NULL CHECK (credits > 0),
    rail                   TEXT   NOT NULL CHECK (rail IN ('stripe', 'stars')),
    amount                 BIGINT NOT NULL CHECK (amount > 0),
    currency               TEXT   NOT NULL,
    -- Where the person bought, as JSON: the "credits added" notice goes there.
    chat                   TEXT   NOT NULL,
    state                  TEXT   NOT NULL CHECK (state IN ('open', 'paid', 'failed')),
    -- The processing fee; `fee_estimated` = 1 until Stripe's balance transaction told the real one.
    fee                    BIGINT NOT NULL DEFAULT 0 CHECK (fee >= 0),
    fee_estimated          BIGINT NOT NULL DEFAULT 1 CHECK (fee_estimated IN (0, 1)),
    -- Money given back or being given back, as we accounted for it (credits taken).
    refunded               BIGINT NOT NULL DEFAULT 0 CHECK (refunded >= 0 AND refunded <= amount),
    -- What Stripe last said was refunded on the charge (cumulative).
    provider_refunded      BIGINT NOT NULL DEFAULT 0 CHECK (provider_refunded >= 0),
    disputed_at            BIGINT,
    -- The transfer that credited the pack (its lot holds the purchase's unused credits).
    transfer_id            BIGINT UNIQUE REFERENCES transfers (id),
    stripe_session_id      TEXT UNIQUE,
    stripe_payment_intent  TEXT UNIQUE,
    stripe_charge_id       TEXT UNIQUE,
    stripe_balance_txn     TEXT,
    telegram_charge_id     TEXT UNIQUE,
    created_at             BIGINT NOT NULL,
    paid_at                BIGINT,
    CHECK ((state = 'paid') = (transfer_id IS NOT NULL))
);
CREATE INDEX purchases_by_user ON purchases (user_id, id);

-- Every verified Stripe event, by id: a repeat is answered 200 and changes nothing.
CREATE TABLE stripe_events (
    id          TEXT   PRIMARY KEY,
    type        TEXT   NOT NULL,
    received_at BIGINT NOT NULL
);

-- Refunds of a purchase's unused credits: asked for by the person (`request`), made in the
-- Stripe dashboard (`stripe`), or forced by a dispute (`dispute`).
CREATE TABLE refunds (
    id                 INTEGER PRIMARY KEY,
    purchase_id        BIGINT NOT NULL REFERENCES purchases (id),
    origin             TEXT   NOT NULL CHECK (origin IN ('request', 'stripe', 'dispute')),
    credits            BIGINT NOT NULL CHECK (credits >= 0),
    amount             BIGINT NOT NULL CHECK (amount >= 0),
    state              TEXT   NOT NULL
        CHECK (state IN ('awaiting_approval', 'processing', 'succeeded', 'failed', 'rejected')),
    -- The hold (request) or transfer (stripe, dispute) that took the credits.
    transfer_id        BIGINT UNIQUE REFERENCES transfers (id),
    provider_refund_id TEXT,
    failure            TEXT,
    created_at         BIGINT NOT NULL,
    resolved_at        BIGINT
);
CREATE INDEX refunds_by_purchase ON refunds (purchase_id);
CREATE INDEX refunds_open ON refunds (state) WHERE state IN ('awaiting_approval', 'processing');

-- The outbox: messages to people that must arrive even if the process stops right after the
-- change they report ("150 credits added"). Written in the change's transaction.
CREATE TABLE notices (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT   NOT NULL UNIQUE,
    -- Which platform's messenger delivers it (an instance sends only what it can reach).
    platform        TEXT   NOT NULL,
    chat            TEXT   NOT NULL,
    text            TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX notices_due ON notices (platform, next_attempt_at) WHERE sent_at IS NULL;
