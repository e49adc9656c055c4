-- The hospitals that feedback asked to be retrained first (the contract's
-- feedback.on_drift: retrain): one row a hospital, the oldest request kept,
-- until a model of it is trained.
CREATE TABLE ward_retrain (
    hospital     TEXT PRIMARY KEY,
    version      TEXT NOT NULL,
    reason       TEXT NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL
);
