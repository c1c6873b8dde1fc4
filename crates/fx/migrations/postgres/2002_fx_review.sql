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
    seq          BIGSERIAL PRIMARY KEY,
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

DROP TRIGGER IF EXISTS fx_quarantine_append_only ON fx_quarantine;
CREATE TRIGGER fx_quarantine_append_only BEFORE UPDATE OR DELETE ON fx_quarantine
    FOR EACH ROW EXECUTE FUNCTION fx_append_only();
DROP TRIGGER IF EXISTS fx_rate_corrections_append_only ON fx_rate_corrections;
CREATE TRIGGER fx_rate_corrections_append_only BEFORE UPDATE OR DELETE ON fx_rate_corrections
    FOR EACH ROW EXECUTE FUNCTION fx_append_only();
