package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

func predictions(ps ...Prediction) func(yield func(Prediction, error) bool) {
	return func(yield func(Prediction, error) bool) {
		for _, p := range ps {
			if !yield(p, nil) {
				return
			}
		}
	}
}

func TestPredictionsAreRecordedOnceAndJoinOutcomes(t *testing.T) {
	engines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url)
		h := hospital(t)
		cases := h.Table("cases")
		t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
		pred := func(req string, item int, caseID, version string, v float64, at time.Duration) Prediction {
			return Prediction{Hospital: h.ID, RequestID: req, Item: item, CaseID: caseID, ModelVersion: version,
				ModelDigest: "sha256:" + version, Inputs: json.RawMessage(`{"age":40}`), Predicted: v, Time: t0.Add(at)}
		}
		batch := []Prediction{
			pred("r1", 0, "C1", "v1", 90, 0),
			pred("r1", 1, "C2", "v1", 150, 0),
			pred("r2", 0, "C3", "v2", 310.5, time.Hour),
			pred("r3", 0, "", "v2", 50, 2*time.Hour),
		}
		batch[3].Inputs, batch[3].InputsHash = nil, "hmac-sha256:abcd"
		c, err := s.InsertPredictions(ctx, batch)
		if err != nil || c.Inserted != 4 || c.Duplicates != 0 {
			t.Fatalf("first batch: %+v, %v", c, err)
		}
		// The server retries a batch: the repeat is counted, not recorded.
		c, err = s.InsertPredictions(ctx, []Prediction{batch[0], pred("r4", 0, "C9", "v2", 1, 3*time.Hour)})
		if err != nil || c.Inserted != 1 || c.Duplicates != 1 {
			t.Fatalf("retried batch: %+v, %v; want 1 inserted, 1 duplicate", c, err)
		}
		if _, err := s.InsertPredictions(ctx, []Prediction{pred("r5", 0, "", "v1", math.NaN(), 0)}); err == nil {
			t.Fatal("a NaN prediction was recorded")
		}

		// A prediction log with 700 lines, two of them already recorded,
		// crossing the insert batches.
		var log []Prediction
		for i := range 698 {
			log = append(log, pred(fmt.Sprintf("log%03d", i), 0, "", "v1", float64(i), 4*time.Hour+time.Duration(i)*time.Second))
		}
		log = append(log, batch[1], batch[2])
		f := file(h.ID, "predictions_2026-03.jsonl", "log")
		c, err = s.LoadPredictions(ctx, f, predictions(log...))
		if err != nil || c.Inserted != 698 || c.Duplicates != 2 {
			t.Fatalf("log: %+v, %v; want 698 inserted, 2 duplicates", c, err)
		}
		entries, err := s.Files(ctx, FileQuery{Hospital: h.ID, Table: PredictionsTable})
		if err != nil || len(entries) != 1 || entries[0].State != Loaded || entries[0].Inserted != 698 || entries[0].Duplicates != 2 {
			t.Fatalf("ledger of the log: %+v, %v", entries, err)
		}
		if _, err := s.LoadPredictions(ctx, f, predictions(log...)); !errors.Is(err, ErrAlreadyLoaded) {
			t.Fatalf("log again: %v, want ErrAlreadyLoaded", err)
		}
		// A log that names another hospital, or fails, loads nothing.
		other := pred("x1", 0, "", "v1", 1, 0)
		other.Hospital = "elsewhere"
		bad := file(h.ID, "predictions_bad.jsonl", "bad")
		if _, err := s.LoadPredictions(ctx, bad, predictions(pred("y1", 0, "", "v1", 1, 0), other)); err == nil {
			t.Fatal("a log with another hospital's prediction loaded")
		}
		broken := errors.New("line 2: not JSON")
		if _, err := s.LoadPredictions(ctx, bad, func(yield func(Prediction, error) bool) {
			if yield(pred("y1", 0, "", "v1", 1, 0), nil) {
				yield(Prediction{}, broken)
			}
		}); !errors.Is(err, broken) {
			t.Fatalf("failing log: %v", err)
		}
		if n := count(t, s, "ward_predictions"); n != 5+698 {
			t.Fatalf("%d predictions, want %d", n, 5+698)
		}

		// Outcomes arrive with a later extract: C1 billed, C2 not yet.
		if _, err := s.Load(ctx, file(h.ID, "cases_2026-04.csv", "april"), cases, stream(
			row(t, cases, "C1", "P1", "2026-03-01", "", "40", "", "100"),
			row(t, cases, "C2", "P1", "2026-03-01", "", "40", "", ""),
			row(t, cases, "C3", "P2", "2026-03-01", "", "40", "", "300"),
		)); err != nil {
			t.Fatal(err)
		}
		var got []Outcome
		for o, err := range s.Outcomes(ctx, h, PredictionQuery{To: t0.Add(4 * time.Hour)}) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, o)
		}
		want := []struct {
			req    string
			item   int
			actual models.Value
		}{
			{"r1", 0, models.Number(100)}, {"r1", 1, models.Missing}, {"r2", 0, models.Number(300)},
			{"r3", 0, models.Missing}, {"r4", 0, models.Missing},
		}
		if len(got) != len(want) {
			t.Fatalf("%d outcomes, want %d: %+v", len(got), len(want), got)
		}
		for i, w := range want {
			if got[i].RequestID != w.req || got[i].Item != w.item || got[i].Actual != w.actual {
				t.Errorf("outcome %d: %s/%d actual %v, want %s/%d actual %v", i, got[i].RequestID, got[i].Item, got[i].Actual, w.req, w.item, w.actual)
			}
		}
		if g := got[0]; g.CaseID != "C1" || g.ModelVersion != "v1" || g.ModelDigest != "sha256:v1" || g.Predicted != 90 ||
			!g.Time.Equal(t0) || string(g.Inputs) != `{"age":40}` || g.InputsHash != "" {
			t.Errorf("first outcome: %+v", g)
		}
		if g := got[3]; g.Inputs != nil || g.InputsHash != "hmac-sha256:abcd" || g.CaseID != "" || !g.CaseTime.IsZero() {
			t.Errorf("hashed outcome: %+v", g)
		}
		// The case's time comes with it, billed or not; none without a case.
		march := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		if !got[0].CaseTime.Equal(march) || !got[1].CaseTime.Equal(march) || !got[4].CaseTime.IsZero() {
			t.Errorf("case times %v, %v, %v; want %v, %v and none (C9 is not loaded)", got[0].CaseTime, got[1].CaseTime, got[4].CaseTime, march, march)
		}
		var v2 []string
		for o, err := range s.Outcomes(ctx, h, PredictionQuery{ModelVersion: "v2", From: t0.Add(time.Hour), To: t0.Add(3 * time.Hour)}) {
			if err != nil {
				t.Fatal(err)
			}
			v2 = append(v2, o.RequestID)
		}
		if !slices.Equal(v2, []string{"r2", "r3"}) {
			t.Fatalf("v2 between 10:00 and 12:00: %v, want [r2 r3]", v2)
		}
	})
}

// A hospital whose case id is a number: predictions name it as text.
func TestOutcomesByNumericCaseID(t *testing.T) {
	h, err := contract.Parse([]byte(`
id: numeric
tables:
  - name: stays
    pattern: "stays_*.csv"
    key: [record_id]
    columns:
      - {name: record_id, type: int, required: true}
      - {name: charges, type: float}
training:
  table: stays
  target: charges
  features: [{name: record_id, kind: categorical}]
`), "numeric/hospital.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tbl := h.Table("stays")
	engines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url)
		if _, err := s.Load(ctx, file(h.ID, "stays_1.csv", "1"), tbl, stream(row(t, tbl, "42", "1234.5"), row(t, tbl, "7", "10"))); err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		if _, err := s.InsertPredictions(ctx, []Prediction{
			{Hospital: h.ID, RequestID: "a", CaseID: "42", Predicted: 1000, Time: at},
			{Hospital: h.ID, RequestID: "b", CaseID: "43", Predicted: 1000, Time: at.Add(time.Second)},
		}); err != nil {
			t.Fatal(err)
		}
		var actual []models.Value
		for o, err := range s.Outcomes(ctx, h, PredictionQuery{}) {
			if err != nil {
				t.Fatal(err)
			}
			actual = append(actual, o.Actual)
		}
		if len(actual) != 2 || actual[0] != models.Number(1234.5) || !actual[1].Null {
			t.Fatalf("outcomes %v, want [1234.5 null]", actual)
		}
	})
}

// The outcomes that no prediction names are counted within the span of
// the predicted cases' times; a case predicted by any model version, or
// without a target, is not one of them.
func TestUnpredicted(t *testing.T) {
	engines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url)
		h := hospital(t)
		cases := h.Table("cases")
		var rows [][]models.Value
		for _, c := range []struct{ id, day, bill string }{
			{"C1", "2026-03-01", "100"}, // predicted by v1
			{"C2", "2026-03-05", "200"}, // not predicted
			{"C3", "2026-03-10", ""},    // not predicted, not billed yet
			{"C4", "2026-03-20", "50"},  // predicted by v2
			{"C5", "2026-02-01", "10"},  // not predicted, before every predicted case
			{"C6", "2026-04-01", "10"},  // not predicted, after them
			{"C7", "2026-03-15", "70"},  // predicted by v1
			{"C8", "2026-03-18", "5"},   // not predicted
		} {
			rows = append(rows, row(t, cases, c.id, "P1", c.day, "", "40", "", c.bill))
		}
		if _, err := s.Load(ctx, file(h.ID, "cases_2026-03.csv", "march"), cases, stream(rows...)); err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 2, 25, 0, 0, 0, 0, time.UTC)
		if _, err := s.InsertPredictions(ctx, []Prediction{
			{Hospital: h.ID, RequestID: "a", CaseID: "C1", ModelVersion: "v1", Predicted: 90, Time: at},
			{Hospital: h.ID, RequestID: "b", CaseID: "C7", ModelVersion: "v1", Predicted: 60, Time: at.Add(time.Hour)},
			{Hospital: h.ID, RequestID: "c", CaseID: "C4", ModelVersion: "v2", Predicted: 40, Time: at.Add(2 * time.Hour)},
			{Hospital: h.ID, RequestID: "d", CaseID: "C99", ModelVersion: "v2", Predicted: 40, Time: at.Add(3 * time.Hour)},
		}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name string
			q    PredictionQuery
			want int64
		}{
			{"every prediction: 03-01 to 03-20", PredictionQuery{}, 2},
			{"v1: 03-01 to 03-15", PredictionQuery{ModelVersion: "v1"}, 1},
			{"v2: 03-20 alone", PredictionQuery{ModelVersion: "v2"}, 0},
			{"from the second prediction: 03-15 to 03-20", PredictionQuery{From: at.Add(time.Hour)}, 1},
			{"no prediction", PredictionQuery{ModelVersion: "v3"}, 0},
		} {
			n, err := s.Unpredicted(ctx, h, c.q)
			if err != nil || n != c.want {
				t.Errorf("%s: %d, %v; want %d", c.name, n, err, c.want)
			}
		}
		noTime := *h
		noTime.Training.TimeColumn = ""
		if _, err := s.Unpredicted(ctx, &noTime, PredictionQuery{}); err == nil || !strings.Contains(err.Error(), "time_column") {
			t.Errorf("without a time column: %v", err)
		}
	})
}

// A predictions table of before migration 0003 (keyed by the client's
// request id) keeps its rows, keyed by their request id; from then on two
// predictions that share a client's request id but not the server's are
// two rows, on both databases.
func TestMigrationKeysPredictionsByTheServersID(t *testing.T) {
	engines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, err := Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{`DROP TABLE ward_predictions`, `CREATE TABLE ward_predictions (
			hospital TEXT NOT NULL, request_id TEXT NOT NULL, item BIGINT NOT NULL, case_id TEXT,
			model_version TEXT NOT NULL, model_digest TEXT NOT NULL, inputs TEXT, inputs_hash TEXT,
			prediction DOUBLE PRECISION NOT NULL, predicted_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (hospital, request_id, item))`,
			`DROP TABLE ward_retrain`, `DELETE FROM ward_migrations WHERE version >= 3`} {
			if _, err := s.db.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
		if _, err := s.db.ExecContext(ctx, `INSERT INTO ward_predictions VALUES ('h', 'fixed', 0, 'C1', 'v1', 'sha256:a', NULL, 'ab', 100, $1)`, s.d.time(at)); err != nil {
			t.Fatal(err)
		}
		s.Close()

		s = open(t, url) // migrates
		c, err := s.InsertPredictions(ctx, []Prediction{
			{Hospital: "h", RequestID: "fixed", Item: 0, CaseID: "C1", ModelVersion: "v1", ModelDigest: "sha256:a", InputsHash: "ab", Predicted: 100, Time: at},
			{Hospital: "h", ServerRequestID: "srv-2", RequestID: "fixed", Item: 0, CaseID: "C2", ModelVersion: "v1", ModelDigest: "sha256:a", InputsHash: "ab", Predicted: 200, Time: at},
		})
		if err != nil {
			t.Fatal(err)
		}
		if c.Inserted != 1 || c.Duplicates != 1 {
			t.Errorf("after the migration: %+v, want the old row a duplicate and the server's new id a new row", c)
		}
		var ids []string
		rows, err := s.db.QueryContext(ctx, `SELECT server_request_id || '/' || request_id FROM ward_predictions ORDER BY case_id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			rows.Scan(&id)
			ids = append(ids, id)
		}
		if strings.Join(ids, " ") != "fixed/fixed srv-2/fixed" {
			t.Errorf("rows keyed %v", ids)
		}
	})
}
