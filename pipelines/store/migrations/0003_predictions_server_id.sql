-- Predictions are keyed by the server's own id of the request
-- (ward.server_request_id), not by the client's X-Request-Id: a client that
-- sent one id with five cases had four of them counted as duplicates. The
-- client's id stays in request_id, for tracing. A prediction recorded before
-- was keyed by its request_id, which becomes its server_request_id. SQLite
-- cannot change a primary key in place, so the table is made again, the
-- same way on both databases.
CREATE TABLE ward_predictions_v3 (
    hospital          TEXT NOT NULL,
    server_request_id TEXT NOT NULL,
    request_id        TEXT NOT NULL,
    item              BIGINT NOT NULL,
    case_id           TEXT,
    model_version     TEXT NOT NULL,
    model_digest      TEXT NOT NULL,
    inputs            TEXT,
    inputs_hash       TEXT,
    prediction        DOUBLE PRECISION NOT NULL,
    predicted_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT ward_predictions_key PRIMARY KEY (hospital, server_request_id, item)
);
INSERT INTO ward_predictions_v3 (hospital, server_request_id, request_id, item, case_id, model_version, model_digest,
    inputs, inputs_hash, prediction, predicted_at)
SELECT hospital, request_id, request_id, item, case_id, model_version, model_digest, inputs, inputs_hash, prediction, predicted_at
FROM ward_predictions;
DROP TABLE ward_predictions;
ALTER TABLE ward_predictions_v3 RENAME TO ward_predictions;
CREATE INDEX ward_predictions_time ON ward_predictions (hospital, predicted_at);
CREATE INDEX ward_predictions_case ON ward_predictions (hospital, case_id);
