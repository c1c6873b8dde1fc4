-- Values held back by a plausibility check: never published until a
-- correction releases them. At most one per provider, currency and date
-- (a key with any stored value is never quarantined again).
CREATE TABLE IF NOT EXISTS fx_quarantine (
    provider     TEXT NOT NULL,
    base         TEXT NOT NULL,
    currency     TEXT NOT NULL,
    fixing_date  TEXT NOT NULL,
    rate         TEXT NOT NULL,
    reason       TEXT NOT NULL,
    ingestion_id TEXT NOT NULL,
    at           TEXT NOT NULL,
    PRIMARY KEY (provider, currency, fixing_date)
);
CREATE INDEX IF NOT EXISTS fx_quarantine_date ON fx_quarantine (fixing_date);

-- Audited corrections: the newest one for a key is its published value;
-- the raw row (or quarantined value) and every earlier correction stay.
CREATE TABLE IF NOT EXISTS fx_rate_corrections (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,
    provider     TEXT NOT NULL,
    base         TEXT NOT NULL,
    currency     TEXT NOT NULL,
    fixing_date  TEXT NOT NULL,
    old_rate     TEXT NOT NULL,
    old_state    TEXT NOT NULL,
    new_rate     TEXT NOT NULL,
    actor        TEXT NOT NULL,
    reason       TEXT NOT NULL,
    via          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fx_rate_corrections_key ON fx_rate_corrections (provider, currency, fixing_date, seq);
CREATE INDEX IF NOT EXISTS fx_rate_corrections_date ON fx_rate_corrections (fixing_date);

CREATE TRIGGER IF NOT EXISTS fx_quarantine_no_update BEFORE UPDATE ON fx_quarantine
BEGIN SELECT RAISE(ABORT, 'fx_quarantine is append-only'); END;
CREATE TRIGGER IF NOT EXISTS fx_quarantine_no_delete BEFORE DELETE ON fx_quarantine
BEGIN SELECT RAISE(ABORT, 'fx_quarantine is append-only'); END;
CREATE TRIGGER IF NOT EXISTS fx_rate_corrections_no_update BEFORE UPDATE ON fx_rate_corrections
BEGIN SELECT RAISE(ABORT, 'fx_rate_corrections is append-only'); END;
CREATE TRIGGER IF NOT EXISTS fx_rate_corrections_no_delete BEFORE DELETE ON fx_rate_corrections
BEGIN SELECT RAISE(ABORT, 'fx_rate_corrections is append-only'); END;
