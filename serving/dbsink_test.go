package serving_test

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/wardml/ward/models/modeltest"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/pipelines/store"
)

func TestPredictionsGoToPostgres(t *testing.T) {
	url := testenv.Postgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The table as ward's own migrations make it: the server writes into
	// it and does not create it.
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	a, _ := stOlaf(t)
	cfg := config(t, modelFile(t, a.Data))
	cfg.PredictionsDB = url
	s := start(t, cfg)
	sent := 0
	for r := range 12 {
		var insts []any
		for i := range 50 {
			c := modeltest.Request(a.Artifact.Inputs, a.Valid[(r*50+i)%len(a.Valid)].Row)
			c["case_id"] = fmt.Sprintf("C%d-%d", r, i)
			insts = append(insts, c)
		}
		if code, ans := s.post(t, map[string]any{"instances": insts}, "X-Request-Id", fmt.Sprintf("r%d", r)); code != 200 {
			t.Fatalf("%d %v", code, ans)
		}
		sent += len(insts)
		if r == 5 {
			waitFor(t, "the first 300 predictions to be written", func() bool {
				return strings.Contains(s.metrics(t), `ward_serve_predictions_db_rows_total{outcome="written"} 300`+"\n")
			})
		}
	}
	// A request sent again under one client id is a prediction of its
	// own: predictions are keyed by the server's id.
	again := stOlafCase()
	again["case_id"] = "C0-0"
	if code, _ := s.post(t, again, "X-Request-Id", "r0"); code != 200 {
		t.Fatal(code)
	}
	if err := s.shutdown(); err != nil { // flushes what is queued
		t.Fatal(err)
	}

	logged := map[string]map[string]any{}
	for _, l := range s.log.lines(t) {
		logged[fmt.Sprintf("%s/%s", l["ward.server_request_id"], l["ward.item"])] = l
	}
	rows, err := conn.Query(ctx, `SELECT hospital, server_request_id, request_id, item, case_id, model_version, model_digest, inputs, inputs_hash, prediction, predicted_at FROM ward_predictions`)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var hospital, serverID, reqID, version, digest string
		var item int64
		var caseID, inputs, hash *string
		var pred float64
		var at time.Time
		if err := rows.Scan(&hospital, &serverID, &reqID, &item, &caseID, &version, &digest, &inputs, &hash, &pred, &at); err != nil {
			t.Fatal(err)
		}
		n++
		l := logged[fmt.Sprintf("%s/%d", serverID, item)]
		if l == nil || l["ward.request_id"] != reqID {
			t.Fatalf("row %s/%d is not in the log", reqID, item)
		}
		want := num(t, l["ward.prediction"])
		loggedInputs, _ := json.Marshal(l["ward.inputs"])
		var rowInputs any
		if inputs == nil || json.Unmarshal([]byte(*inputs), &rowInputs) != nil {
			t.Fatalf("row %s/%d: inputs %v", reqID, item, inputs)
		}
		rowJSON, _ := json.Marshal(rowInputs)
		switch {
		case math.Float64bits(pred) != math.Float64bits(want):
			t.Errorf("row %s/%d: prediction %v, logged %v", reqID, item, pred, want)
		case hospital != "st-olaf" || version != a.Artifact.Version || digest != l["ward.model.digest"] || hash != nil:
			t.Errorf("row %s/%d: %s %s %s %v", reqID, item, hospital, version, digest, hash)
		case caseID == nil || *caseID != l["ward.case_id"]:
			t.Errorf("row %s/%d: case id %v, logged %v", reqID, item, caseID, l["ward.case_id"])
		case string(rowJSON) != string(loggedInputs):
			t.Errorf("row %s/%d: inputs %s, logged %s", reqID, item, rowJSON, loggedInputs)
		case at.Sub(time.Now()).Abs() > time.Minute:
			t.Errorf("row %s/%d: predicted at %v", reqID, item, at)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != sent+1 {
		t.Errorf("%d rows, want %d (the request sent again under r0 too)", n, sent+1)
	}
}

func TestUnreachableDatabaseDoesNotStopServing(t *testing.T) {
	a, _ := stOlaf(t)
	cfg := config(t, modelFile(t, a.Data))
	cfg.PredictionsDB = fmt.Sprintf("postgres://ward@127.0.0.1:%d/ward?connect_timeout=1", testenv.FreePort(t))
	cfg.DrainTimeout = time.Second
	s := start(t, cfg)
	for range 5 {
		if code, ans := s.post(t, stOlafCase()); code != 200 {
			t.Fatalf("%d %v", code, ans)
		}
	}
	began := time.Now()
	if err := s.shutdown(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("shutdown took %s with the database down; the drain timeout is %s", took, cfg.DrainTimeout)
	}
	if len(s.log.lines(t)) != 5 {
		t.Error("the prediction log lacks the predictions the database did not take")
	}
	if ops := s.ops.text(); !strings.Contains(ops, "predictions db: giving up at shutdown") || !strings.Contains(ops, `"ward.dropped":5`) {
		t.Errorf("server log:\n%s", ops)
	}
}
