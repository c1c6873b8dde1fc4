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
    seq      BIGSERIAL PRIMARY KEY,
    at       TEXT NOT NULL,
    event    TEXT NOT NULL,
    quote_id TEXT NOT NULL,
    detail   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fx_audit_quote ON fx_audit (quote_id);

CREATE OR REPLACE FUNCTION fx_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS fx_audit_append_only ON fx_audit;
CREATE TRIGGER fx_audit_append_only BEFORE UPDATE OR DELETE ON fx_audit
    FOR EACH ROW EXECUTE FUNCTION fx_append_only();
DROP TRIGGER IF EXISTS fx_raw_rates_append_only ON fx_raw_rates;
CREATE TRIGGER fx_raw_rates_append_only BEFORE UPDATE ON fx_raw_rates
    FOR EACH ROW EXECUTE FUNCTION fx_append_only();
DROP TRIGGER IF EXISTS fx_quotes_append_only ON fx_quotes;
CREATE TRIGGER fx_quotes_append_only BEFORE UPDATE ON fx_quotes
    FOR EACH ROW EXECUTE FUNCTION fx_append_only();
