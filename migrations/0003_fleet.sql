-- A fleet of drill hosts sharing this state in PostgreSQL (DESIGN D11);
-- on a single host's SQLite the same tables, with one host in them.
-- Portable SQL, as 0001.

-- A lock is a lease: it lapses at expires_ms unless its holder renews it
-- (NULL: held until released, or until its process on its host is gone).
ALTER TABLE locks ADD COLUMN expires_ms BIGINT;

-- Which host ran a run.
ALTER TABLE runs ADD COLUMN host TEXT;

-- The tenant a drill belongs to (many tenants in one fleet).
ALTER TABLE drills ADD COLUMN tenant TEXT;

-- Each drill host, registered at its start and at every tick.
CREATE TABLE hosts (
    name TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_ms BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL
);

-- The keys attached to a host now, per drill (a drill's key names are its
-- own): the AAGUID and SHA-256 of the credential id when known, never the
-- credential id itself.
CREATE TABLE host_keys (
    host TEXT NOT NULL,
    drill_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    aaguid TEXT,
    credential_sha256 TEXT,
    seen_ms BIGINT NOT NULL,
    PRIMARY KEY (host, drill_id, key_id)
);

-- Every host's evidence signing key, with its validity window: the
-- fleet's allowed_signers is made from these rows.
CREATE TABLE signers (
    host TEXT NOT NULL,
    principal TEXT NOT NULL,
    public_key TEXT NOT NULL,
    valid_after_ms BIGINT NOT NULL,
    valid_before_ms BIGINT,
    PRIMARY KEY (host, public_key)
);

-- Sealed bundles, content-addressed by the SHA-256 of their SHA256SUMS;
-- the files as base64 text (portable), the bundle also stays on the host
-- that made it.
CREATE TABLE bundles (
    digest TEXT PRIMARY KEY,
    drill_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    host TEXT NOT NULL,
    stored_ms BIGINT NOT NULL
);
CREATE TABLE bundle_files (
    digest TEXT NOT NULL,
    path TEXT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (digest, path)
);

-- The fleet's one evidence log: entry lines in order (the leaf is the
-- line's bytes), and each checkpoint signed by the host that appended.
-- Appends serialise on fleet_head's one row.
CREATE TABLE fleet_head (
    id BIGINT PRIMARY KEY,
    size BIGINT NOT NULL
);
INSERT INTO fleet_head (id, size) VALUES (1, 0);
CREATE TABLE fleet_log (
    seq BIGINT PRIMARY KEY,
    line TEXT NOT NULL,
    host TEXT NOT NULL
);
CREATE TABLE fleet_checkpoints (
    size BIGINT PRIMARY KEY,
    note TEXT NOT NULL,
    host TEXT NOT NULL
);
