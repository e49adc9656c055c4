-- Feedback looks predictions up by case: the outcomes that no prediction
-- names (Store.Unpredicted).
CREATE INDEX ward_predictions_case ON ward_predictions (hospital, case_id);
