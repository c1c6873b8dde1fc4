-- Dark launches (gateway-mirror). Versions 3001+ belong to this crate.
CREATE TABLE IF NOT EXISTS shadow_launches (
    name        TEXT PRIMARY KEY,
    config      TEXT NOT NULL,
    state       TEXT NOT NULL,
    origin      TEXT NOT NULL DEFAULT 'api',
    updated_at  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS shadow_stats (
    launch      TEXT PRIMARY KEY,
    snapshot    TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS shadow_examples (
    launch      TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    endpoint    TEXT NOT NULL,
    field       TEXT NOT NULL,
    example     TEXT NOT NULL,
    PRIMARY KEY (launch, seq)
);
