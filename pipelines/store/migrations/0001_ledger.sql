-- ward's own tables. The same text runs on PostgreSQL and SQLite: the types
-- are spelled the way PostgreSQL wants them and SQLite maps them to its
-- storage classes (BIGINT to INTEGER, DOUBLE PRECISION to REAL; TIMESTAMPTZ
-- holds ward's fixed-width UTC text there, so that text order is time order).

-- The ledger: every file ward has seen, by hospital, name and content. A
-- file is loaded at most once by content: the partial unique index refuses
-- a second loaded entry with the same SHA-256, whatever its name.
CREATE TABLE ward_files (
    hospital   TEXT NOT NULL,
    name       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    size       BIGINT NOT NULL,
    tbl        TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('fetched', 'quarantined', 'duplicate', 'loaded')),
    reason     TEXT NOT NULL DEFAULT '',
    inserted   BIGINT NOT NULL DEFAULT 0,
    updated    BIGINT NOT NULL DEFAULT 0,
    duplicates BIGINT NOT NULL DEFAULT 0,
    rejected   BIGINT NOT NULL DEFAULT 0,
    first_seen TIMESTAMPTZ NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (hospital, name, sha256)
);
CREATE UNIQUE INDEX ward_files_loaded ON ward_files (hospital, sha256) WHERE state = 'loaded';
CREATE INDEX ward_files_content ON ward_files (hospital, sha256);

-- Who holds each hospital's lock. On PostgreSQL the lock itself is an
-- advisory lock and this row only names the holder; on SQLite the row is
-- the lock, and it is free once expires has passed.
CREATE TABLE ward_locks (
    hospital TEXT PRIMARY KEY,
    token    TEXT NOT NULL,
    what     TEXT NOT NULL,
    pid      BIGINT NOT NULL,
    host     TEXT NOT NULL,
    since    TIMESTAMPTZ NOT NULL,
    expires  TIMESTAMPTZ
);

-- The data tables ward made from the contracts, and the contract type of
-- each of their columns (the database's own types cannot tell a date from
-- a string on SQLite).
CREATE TABLE ward_tables (
    name     TEXT PRIMARY KEY,
    hospital TEXT NOT NULL,
    tbl      TEXT NOT NULL,
    key      TEXT NOT NULL,
    UNIQUE (hospital, tbl)
);
CREATE TABLE ward_columns (
    name TEXT NOT NULL REFERENCES ward_tables (name),
    col  TEXT NOT NULL,
    type TEXT NOT NULL,
    PRIMARY KEY (name, col)
);

-- Every prediction served, once per (hospital, request, item of the
-- request's batch).
CREATE TABLE ward_predictions (
    hospital      TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    item          BIGINT NOT NULL,
    case_id       TEXT,
    model_version TEXT NOT NULL,
    model_digest  TEXT NOT NULL,
    inputs        TEXT,
    inputs_hash   TEXT,
    prediction    DOUBLE PRECISION NOT NULL,
    predicted_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (hospital, request_id, item)
);
CREATE INDEX ward_predictions_time ON ward_predictions (hospital, predicted_at);
