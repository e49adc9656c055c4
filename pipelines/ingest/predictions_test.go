package ingest_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardml/ward/pipelines/ingest"
	"github.com/wardml/ward/pipelines/ingest/fetch"
	"github.com/wardml/ward/pipelines/store"
)

// predLine is one line of the model server's prediction log.
func predLine(hospital, request string, item int, version string, prediction float64) string {
	return fmt.Sprintf(`{"@timestamp":"2024-03-05T10:00:00.000Z","log.level":"info","message":"prediction","service.name":"ward-serve","event.kind":"event","event.action":"predict","event.outcome":"success","event.duration":1200,"ward.request_id":%q,"ward.item":%d,"ward.hospital":%q,"ward.model.version":%q,"ward.model.digest":"sha256:%064d","ward.case_id":"C02-%07d","ward.inputs":{"age":40,"ward_class":"A"},"ward.prediction":%g,"ward.calibrated":%g}`,
		request, item, hospital, version, 0, item, prediction, prediction*1.1)
}

// Prediction logs go through the same ledger, validation and idempotence
// as extracts: a malformed line and a prediction of another hospital are
// rejected with their line numbers (and kept), a request repeated in the
// log or already recorded is counted and loaded once, and predictions of
// a model version ward never deployed are loaded, counted and reported.
func TestPredictionLogs(t *testing.T) {
	g := cleanGroup(t)
	engines(t, func(t *testing.T, url string) {
		box := dropBox(t, g)
		inbound := filepath.Join(box, "riverside", "inbound")
		var lines []string
		for i := range 60 {
			version := "2024.02.1"
			if i < 10 {
				version = "legacy-7"
			}
			lines = append(lines, predLine("riverside", fmt.Sprintf("req-%02d", i), 0, version, 1000+float64(i)))
		}
		lines = append(lines, predLine("riverside", "req-05", 0, "2024.02.1", 1005))        // line 61: a repeat
		lines = append(lines, `{"@timestamp": "2024-03-05T10:00:00Z", "ward.request_id": `) // line 62: malformed
		lines = append(lines, predLine("st-olaf", "req-99", 0, "2024.02.1", 5))             // line 63: another hospital
		lines = append(lines, predLine("riverside", "req-60", 1, "2024.02.1", 7))           // a second item
		write := func(name string, lines []string) {
			if err := os.WriteFile(filepath.Join(inbound, name), ageSeal(t, g, []byte(strings.Join(lines, "\n")+"\n")), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write("predictions_2024-03.jsonl.age", lines)

		r := newRig(t, url)
		known := ingest.WithModelVersions(func(_ context.Context, hospital string) ([]string, error) {
			return []string{"2024.01.1", "2024.02.1"}, nil
		})
		sum := r.run(g, fetch.Dir(box), g.hs, known)
		f := file(t, sum, "predictions_2024-03.jsonl.age")
		if f.Outcome != ingest.Loaded || f.Table != store.PredictionsTable || f.Loaded != 61 || f.Rejected != 2 || f.Duplicates != 1 ||
			len(f.UnknownModels) != 1 || f.UnknownModels["legacy-7"] != 10 {
			t.Fatalf("%s\n%+v", f.Message(), f)
		}
		checkGoodLoaded(t, r, g, sum, 1, 0)
		report, err := os.ReadFile(f.Report)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"row 62: not a JSON object: unexpected end of JSON input", `row 63: ward.hospital: a prediction of another hospital, in the folder of riverside`} {
			if !strings.Contains(string(report), want) {
				t.Errorf("report lacks %q:\n%s", want, report)
			}
		}
		if _, err := os.Stat(f.Rejects); err != nil {
			t.Errorf("rejected lines: %v", err)
		}
		db := r.db()
		if n := count(t, db, "SELECT count(*) FROM ward_predictions WHERE hospital = 'riverside'"); n != 61 {
			t.Fatalf("%d predictions recorded, want 61", n)
		}
		if n := count(t, db, "SELECT rejected FROM ward_files WHERE name = 'predictions_2024-03.jsonl.age' AND state = 'loaded'"); n != 2 {
			t.Fatalf("ledger: %d rejected", n)
		}

		// The next log repeats ten requests the first recorded, and adds one.
		write("predictions_2024-04.jsonl.age", append(lines[20:30], predLine("riverside", "req-70", 0, "2024.02.1", 3)))
		sum = r.run(g, fetch.Dir(box), g.hs, known)
		f = file(t, sum, "predictions_2024-04.jsonl.age")
		if f.Outcome != ingest.Loaded || f.Loaded != 1 || f.Duplicates != 10 || file(t, sum, "predictions_2024-03.jsonl.age").Outcome != ingest.Skipped {
			t.Fatalf("second log: %s", f.Message())
		}
		if n := count(t, db, "SELECT count(*) FROM ward_predictions WHERE hospital = 'riverside'"); n != 62 {
			t.Fatalf("%d predictions recorded, want 62", n)
		}

		// A log of mostly garbage is quarantined whole.
		write("predictions_2024-05.jsonl.age", []string{predLine("riverside", "req-80", 0, "2024.02.1", 3), "garbage", "more garbage"})
		sum = r.run(g, fetch.Dir(box), g.hs, known)
		f = file(t, sum, "predictions_2024-05.jsonl.age")
		if f.Outcome != ingest.Quarantined || !strings.Contains(f.Reason, "2 of 3 lines rejected") || !strings.Contains(f.Reason, "first: line 2: not a JSON object") {
			t.Fatalf("garbage log: %s", f.Message())
		}
		if n := count(t, db, "SELECT count(*) FROM ward_predictions WHERE request_id = 'req-80'"); n != 0 {
			t.Fatalf("a prediction of the quarantined log was recorded")
		}
	})
}
