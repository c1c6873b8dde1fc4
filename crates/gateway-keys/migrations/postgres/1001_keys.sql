-- gateway-keys schema (PostgreSQL). Times are Unix milliseconds (UTC).
CREATE TABLE IF NOT EXISTS gk_consumers (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    plan           TEXT,
    consumer_group TEXT,
    created_at     BIGINT NOT NULL
);

-- Only the SHA-256 of a key is stored, never the key.
CREATE TABLE IF NOT EXISTS gk_keys (
    id              TEXT PRIMARY KEY,
    hash            TEXT NOT NULL UNIQUE,
    consumer_id     TEXT NOT NULL REFERENCES gk_consumers(id),
    name            TEXT NOT NULL,
    environment     TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    plan            TEXT,
    created_at      BIGINT NOT NULL,
    created_by      TEXT NOT NULL,
    expires_at      BIGINT,
    revoked_at      BIGINT,
    revoked_reason  TEXT,
    last_used_at    BIGINT,
    predecessor_id  TEXT,
    successor_id    TEXT,
    grace_until     BIGINT,
    warned_at       BIGINT,
    expiry_noted_at BIGINT
);
CREATE INDEX IF NOT EXISTS gk_keys_consumer ON gk_keys (consumer_id);

CREATE TABLE IF NOT EXISTS gk_audit (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    key_id      TEXT,
    consumer_id TEXT,
    detail      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gk_audit_key ON gk_audit (key_id, id);

-- The audit log is append-only, enforced by the database itself.
CREATE OR REPLACE FUNCTION gk_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'gk_audit is append-only';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS gk_audit_no_change ON gk_audit;
CREATE TRIGGER gk_audit_no_change BEFORE UPDATE OR DELETE ON gk_audit
    FOR EACH ROW EXECUTE FUNCTION gk_audit_append_only();

CREATE TABLE IF NOT EXISTS gk_quota_usage (
    subject TEXT NOT NULL,
    period  TEXT NOT NULL,
    used    BIGINT NOT NULL,
    PRIMARY KEY (subject, period)
);
