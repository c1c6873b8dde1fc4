-- Raw rates exactly as each provider published them; one row per provider,
-- currency and fixing date, never updated or deleted.
CREATE TABLE IF NOT EXISTS fx_raw_rates (
    provider     TEXT NOT NULL,
    base         TEXT NOT NULL,
    currency     TEXT NOT NULL,
    fixing_date  TEXT NOT NULL,
    rate         TEXT NOT NULL,
    ingestion_id TEXT NOT NULL,
    PRIMARY KEY (provider, currency, fixing_date)
);
CREATE INDEX IF NOT EXISTS fx_raw_rates_date ON fx_raw_rates (fixing_date);

CREATE TABLE IF NOT EXISTS fx_ingestions (
    id            TEXT PRIMARY KEY,
    provider      TEXT NOT NULL,
    format        TEXT NOT NULL,
    at            TEXT NOT NULL,
    rows_inserted BIGINT NOT NULL,
    rows_ignored  BIGINT NOT NULL,
    first_date    TEXT NOT NULL,
    last_date     TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS fx_quotes (
    id            TEXT PRIMARY KEY,
    from_ccy      TEXT NOT NULL,
    to_ccy        TEXT NOT NULL,
    mid_rate      TEXT NOT NULL,
    customer_rate TEXT NOT NULL,
    spread_bps    BIGINT NOT NULL,
    tier          TEXT NOT NULL,
    fixing_date   TEXT NOT NULL,
    providers     TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL
);

-- Append-only audit of quotes and quoted conversions, for accounting.
CREATE TABLE IF NOT EXISTS fx_audit (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    at       TEXT NOT NULL,
    event    TEXT NOT NULL,
    quote_id TEXT NOT NULL,
    detail   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fx_audit_quote ON fx_audit (quote_id);

CREATE TRIGGER IF NOT EXISTS fx_audit_no_update BEFORE UPDATE ON fx_audit
BEGIN SELECT RAISE(ABORT, 'fx_audit is append-only'); END;
CREATE TRIGGER IF NOT EXISTS fx_audit_no_delete BEFORE DELETE ON fx_audit
BEGIN SELECT RAISE(ABORT, 'fx_audit is append-only'); END;
CREATE TRIGGER IF NOT EXISTS fx_raw_rates_no_update BEFORE UPDATE ON fx_raw_rates
BEGIN SELECT RAISE(ABORT, 'fx_raw_rates is append-only'); END;
CREATE TRIGGER IF NOT EXISTS fx_quotes_no_update BEFORE UPDATE ON fx_quotes
BEGIN SELECT RAISE(ABORT, 'fx_quotes is append-only'); END;
