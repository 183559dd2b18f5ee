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
);
CREATE INDEX lot_consumptions_by_lot ON lot_consumptions (lot_id);
