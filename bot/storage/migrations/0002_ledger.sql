-- The token ledger (DESIGN section 1, "Quota"); bot/storage/ledger.py is its only user.
--
-- quota_balances holds one row per member per period (period_start = 00:00 UTC, unix
-- seconds). A reservation is one INSERT into ledger_reservations whose SELECT enforces
-- spent + reserved + tokens <= limit + granted; its trigger adds the tokens to `reserved`,
-- creating the period's row on first use. Settling or releasing is one INSERT into
-- ledger_entries, taken only while the reservation is open; its trigger closes the
-- reservation and moves the reserved tokens to `spent`. One statement each, so no
-- interleaving can leave half a change, and a duplicate does nothing.
--
-- `spent` counts the entries of its period whose id is above `counted_after_entry`
-- (an admin reset raises the mark to the newest entry and zeroes the counters).

CREATE TABLE quota_limits (
    guild_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    limit_tokens INTEGER NOT NULL CHECK (limit_tokens >= 0),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (guild_id, user_id)
) WITHOUT ROWID;

CREATE TABLE quota_balances (
    guild_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    period_start INTEGER NOT NULL,
    spent INTEGER NOT NULL DEFAULT 0 CHECK (spent >= 0),
    reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    granted INTEGER NOT NULL DEFAULT 0 CHECK (granted >= 0),
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_image_tokens INTEGER NOT NULL DEFAULT 0,
    output_text_tokens INTEGER NOT NULL DEFAULT 0,
    thinking_tokens INTEGER NOT NULL DEFAULT 0,
    cost_micro_usd INTEGER NOT NULL DEFAULT 0 CHECK (cost_micro_usd >= 0),
    counted_after_entry INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (guild_id, user_id, period_start),
    CHECK (spent = input_tokens + output_image_tokens + output_text_tokens + thinking_tokens)
) WITHOUT ROWID;

CREATE TABLE ledger_reservations (
    key TEXT PRIMARY KEY,
    guild_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    period_start INTEGER NOT NULL,
    tokens INTEGER NOT NULL CHECK (tokens >= 0),
    state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'settled', 'released')),
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    closed_at INTEGER
) WITHOUT ROWID;

CREATE INDEX ledger_reservations_open
    ON ledger_reservations (guild_id, user_id, period_start) WHERE state = 'open';

CREATE TABLE ledger_entries (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE REFERENCES ledger_reservations (key),
    guild_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    period_start INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL CHECK (input_tokens >= 0),
    output_image_tokens INTEGER NOT NULL CHECK (output_image_tokens >= 0),
    output_text_tokens INTEGER NOT NULL CHECK (output_text_tokens >= 0),
    thinking_tokens INTEGER NOT NULL CHECK (thinking_tokens >= 0),
    total_tokens INTEGER NOT NULL,
    cost_micro_usd INTEGER NOT NULL CHECK (cost_micro_usd >= 0),
    reported INTEGER NOT NULL CHECK (reported IN (0, 1)),
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('charge', 'release')),
    created_at INTEGER NOT NULL,
    CHECK (total_tokens = input_tokens + output_image_tokens + output_text_tokens + thinking_tokens)
);

CREATE INDEX ledger_entries_member ON ledger_entries (guild_id, user_id, id);

CREATE TABLE quota_audit (
    id INTEGER PRIMARY KEY,
    guild_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    actor_id INTEGER NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('set_limit', 'grant', 'reset')),
    tokens INTEGER,
    previous INTEGER,
    period_start INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE INDEX quota_audit_member ON quota_audit (guild_id, user_id, id);

-- Holding: a new reservation adds its tokens to its period's row, creating the row.
CREATE TRIGGER ledger_reservation_holds AFTER INSERT ON ledger_reservations
BEGIN
    INSERT INTO quota_balances (guild_id, user_id, period_start, reserved)
    VALUES (NEW.guild_id, NEW.user_id, NEW.period_start, NEW.tokens)
    ON CONFLICT (guild_id, user_id, period_start)
    DO UPDATE SET reserved = reserved + excluded.reserved;
END;

-- A closed reservation stays closed and its size never changes.
CREATE TRIGGER ledger_reservation_frozen BEFORE UPDATE ON ledger_reservations
WHEN OLD.state <> 'open' OR NEW.tokens <> OLD.tokens OR NEW.key <> OLD.key
BEGIN
    SELECT RAISE(ABORT, 'ledger reservation is closed');
END;

-- An entry closes an open reservation, never anything else (a second close would
-- take its tokens out of `reserved` twice).
CREATE TRIGGER ledger_entry_needs_open BEFORE INSERT ON ledger_entries
WHEN (SELECT state FROM ledger_reservations WHERE key = NEW.key) IS NOT 'open'
BEGIN
    SELECT RAISE(ABORT, 'ledger reservation is not open');
END;

-- Settling or releasing: close the reservation and move its tokens to the charge.
CREATE TRIGGER ledger_entry_settles AFTER INSERT ON ledger_entries
BEGIN
    UPDATE ledger_reservations
    SET state = iif(NEW.kind = 'charge', 'settled', 'released'), closed_at = NEW.created_at
    WHERE key = NEW.key;
    UPDATE quota_balances
    SET reserved = reserved - (SELECT tokens FROM ledger_reservations WHERE key = NEW.key),
        spent = spent + NEW.total_tokens,
        input_tokens = input_tokens + NEW.input_tokens,
        output_image_tokens = output_image_tokens + NEW.output_image_tokens,
        output_text_tokens = output_text_tokens + NEW.output_text_tokens,
        thinking_tokens = thinking_tokens + NEW.thinking_tokens,
        cost_micro_usd = cost_micro_usd + NEW.cost_micro_usd
    WHERE guild_id = NEW.guild_id AND user_id = NEW.user_id AND period_start = NEW.period_start;
END;

-- Entries and audit rows are append-only.
CREATE TRIGGER ledger_entries_append_only_update BEFORE UPDATE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are append-only');
END;

CREATE TRIGGER ledger_entries_append_only_delete BEFORE DELETE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are append-only');
END;

CREATE TRIGGER quota_audit_append_only_update BEFORE UPDATE ON quota_audit
BEGIN
    SELECT RAISE(ABORT, 'audit rows are append-only');
END;

CREATE TRIGGER quota_audit_append_only_delete BEFORE DELETE ON quota_audit
BEGIN
    SELECT RAISE(ABORT, 'audit rows are append-only');
END;
