package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/models/predlog"
)

// Prediction is one prediction served: one instance of a request's batch,
// the record that models/predlog defines for the server and ingest alike.
type Prediction = predlog.Record

// InsertPredictions records a batch of predictions, as the model server
// sends them, in one transaction. A prediction already recorded (same
// hospital, server request id and item) is counted in Duplicates, not
// again.
func (s *Store) InsertPredictions(ctx context.Context, ps []Prediction) (Counts, error) {
	var c Counts
	err := s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
		var err error
		c, err = s.insertPredictions(ctx, tx, "", func(yield func(Prediction, error) bool) {
			for _, p := range ps {
				if !yield(p, nil) {
					return
				}
			}
		})
		return err
	})
	if err != nil {
		return Counts{}, fmt.Errorf("record predictions: %w", err)
	}
	return c, nil
}

// LoadPredictions loads a prediction log of f's hospital, as Load loads an
// extract: in one transaction with its ledger entry, all or nothing.
// Predictions already recorded (the server wrote them directly, or another
// log repeats them) are counted in Duplicates.
func (s *Store) LoadPredictions(ctx context.Context, f File, ps iter.Seq2[Prediction, error], opts ...LoadOption) (Counts, error) {
	f.Table = PredictionsTable
	c, err := s.loadFile(ctx, f, func(_ *sql.Conn, tx *sql.Tx) (Counts, error) {
		return s.insertPredictions(ctx, tx, f.Hospital, ps)
	}, opts)
	if err != nil {
		return Counts{}, fmt.Errorf("load %s into ward_predictions: %w; nothing loaded", f, err)
	}
	return c, nil
}

// insertPredictions inserts in batches; hospital, when set, is the one
// every prediction must be of.
func (s *Store) insertPredictions(ctx context.Context, tx *sql.Tx, hospital string, ps iter.Seq2[Prediction, error]) (Counts, error) {
	const per = 500
	var c Counts
	var n int64
	cols := len(predlog.Columns)
	args := make([]any, 0, per*cols)
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		rows := len(args) / cols
		res, err := tx.ExecContext(ctx, predlog.Insert(rows), args...)
		if err != nil {
			return err
		}
		added, err := res.RowsAffected()
		c.Inserted += added
		c.Duplicates += int64(rows) - added
		args = args[:0]
		return err
	}
	for p, err := range ps {
		n++
		if err != nil {
			return Counts{}, fmt.Errorf("prediction %d: %w", n, err)
		}
		if err := p.Check(); err != nil {
			return Counts{}, fmt.Errorf("prediction %d: %w", n, err)
		}
		if hospital != "" && p.Hospital != hospital {
			return Counts{}, fmt.Errorf("prediction %d (request %s): is for hospital %s, not %s", n, p.RequestID, p.Hospital, hospital)
		}
		args = p.Values(args, s.d.time)
		if len(args) == cap(args) {
			if err := flush(); err != nil {
				return Counts{}, err
			}
		}
	}
	return c, flush()
}

// Outcome is a prediction with the outcome of its case.
type Outcome struct {
	Prediction
	// Actual is the case's target (e.g. total_bill) as loaded; null while
	// no extract has brought it, or when the prediction named no case.
	Actual models.Value
	// CaseTime is the value of the case's time column (training's
	// time_column, e.g. admitted_at); zero when the contract has none or
	// the case is not loaded.
	CaseTime time.Time
}

// PredictionQuery selects predictions; empty fields select all.
type PredictionQuery struct {
	ModelVersion string
	// From (inclusive) and To (exclusive) bound the time of prediction.
	From, To time.Time
}

// where is the WHERE clause that selects a hospital's predictions (table
// alias p) as q says, and its arguments.
func (s *Store) where(hospital string, q PredictionQuery) (string, []any) {
	args := []any{hospital}
	where := []string{"p.hospital = $1"}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if q.ModelVersion != "" {
		add("p.model_version = $%d", q.ModelVersion)
	}
	if !q.From.IsZero() {
		add("p.predicted_at >= $%d", s.d.time(q.From))
	}
	if !q.To.IsZero() {
		add("p.predicted_at < $%d", s.d.time(q.To))
	}
	return strings.Join(where, " AND "), args
}

// caseID is the SQL text of the main table's case id (alias alias), as
// predictions name it: text.
func caseID(h *contract.Hospital, main *contract.Table, alias string) string {
	id := alias + "." + quote(h.Training.ID)
	if main.Column(h.Training.ID).Type != models.String {
		id = "CAST(" + id + " AS TEXT)"
	}
	return id
}

// Outcomes streams a hospital's predictions that q selects, each joined by
// its case id with the target (and the time) of the case in the main
// table, in order of time.
func (s *Store) Outcomes(ctx context.Context, h *contract.Hospital, q PredictionQuery) iter.Seq2[Outcome, error] {
	return func(yield func(Outcome, error) bool) {
		main := h.Table(h.Training.Table)
		fail := func(err error) { yield(Outcome{}, fmt.Errorf("predictions of %s: %w", h.ID, err)) }
		if err := s.EnsureTable(ctx, h.ID, main); err != nil {
			fail(err)
			return
		}
		var o Outcome
		var item int64
		var id, inputs, hash sql.NullString
		var server string
		actual := valueScanner{typ: main.Column(h.Training.Target).Type}
		sel := "c." + quote(h.Training.Target)
		// In the order of predlog.Columns.
		dest := []any{&o.Hospital, &server, &o.RequestID, &item, &id, &o.ModelVersion, &o.ModelDigest, &inputs, &hash, &o.Predicted, timeScanner{&o.Time}, &actual}
		var at *valueScanner
		if tc := h.Training.TimeColumn; tc != "" {
			at = &valueScanner{typ: main.Column(tc).Type}
			sel += ", c." + quote(tc)
			dest = append(dest, at)
		}
		where, args := s.where(h.ID, q)
		query := fmt.Sprintf(`SELECT p.%s, %s FROM ward_predictions AS p LEFT JOIN %s AS c ON %s = p.case_id
			WHERE %s ORDER BY p.predicted_at, p.request_id, p.server_request_id, p.item`,
			strings.Join(predlog.Columns, ", p."), sel, quote(TableName(h.ID, main.Name)), caseID(h, main, "c"), where)
		rows, err := s.db.QueryContext(ctx, query, args...)
		if err != nil {
			fail(err)
			return
		}
		defer rows.Close()
		for rows.Next() {
			o = Outcome{}
			if err := rows.Scan(dest...); err != nil {
				fail(err)
				return
			}
			o.Item, o.CaseID, o.InputsHash, o.Actual = int(item), id.String, hash.String, actual.v
			o.ServerRequestID = server
			if inputs.Valid {
				o.Inputs = json.RawMessage(inputs.String)
			}
			if at != nil && !at.v.Null {
				o.CaseTime = at.v.Time(at.typ)
			}
			if !yield(o, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			fail(err)
		}
	}
}

// Unpredicted counts the outcomes that no prediction names: the cases of
// the hospital's main table with a target whose time lies within the
// span of the times of the cases that q's predictions name (both ends
// included), and that no prediction of the hospital, of any model
// version, names. It needs the contract's time column: without one there
// is no span, and every case ever loaded would count.
func (s *Store) Unpredicted(ctx context.Context, h *contract.Hospital, q PredictionQuery) (int64, error) {
	if h.Training.TimeColumn == "" {
		return 0, fmt.Errorf("unpredicted cases of %s: the contract has no training time_column to bound them by", h.ID)
	}
	main := h.Table(h.Training.Table)
	if err := s.EnsureTable(ctx, h.ID, main); err != nil {
		return 0, fmt.Errorf("unpredicted cases of %s: %w", h.ID, err)
	}
	tbl, at, target := quote(TableName(h.ID, main.Name)), quote(h.Training.TimeColumn), quote(h.Training.Target)
	where, args := s.where(h.ID, q)
	span := fmt.Sprintf("SELECT %%s(c.%s) FROM ward_predictions AS p JOIN %s AS c ON %s = p.case_id WHERE %s",
		at, tbl, caseID(h, main, "c"), where)
	query := fmt.Sprintf(`SELECT count(*) FROM %s AS m WHERE m.%s IS NOT NULL AND m.%s >= (%s) AND m.%s <= (%s)
		AND NOT EXISTS (SELECT 1 FROM ward_predictions AS o WHERE o.hospital = $1 AND o.case_id = %s)`,
		tbl, target, at, fmt.Sprintf(span, "min"), at, fmt.Sprintf(span, "max"), caseID(h, main, "m"))
	var n int64
	if err := s.db.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("unpredicted cases of %s: %w", h.ID, err)
	}
	return n, nil
}
