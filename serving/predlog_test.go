package serving

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The answer's hand-written JSON reads back as encoding/json's does.
func TestAnswerJSONMatchesEncodingJSON(t *testing.T) {
	cal := 2345.0625
	for _, r := range []PredictResponse{
		{Answer: &Answer{Prediction: 1234.5}, Target: "total_bill", Hospital: "st-olaf", ModelVersion: "v1", ModelDigest: "sha256:ab", RequestID: "r1"},
		{Answer: &Answer{Prediction: 1e-9, Calibrated: &cal, CaseID: "C-1 \"quoted\"", Unseen: []UnseenValue{{Field: "doctor_id", Value: "D999"}, {Field: "ward", Value: "<&>"}}},
			Target: "bill", Hospital: "h", ModelVersion: "v", ModelDigest: "d", RequestID: "r"},
		{Predictions: []Answer{{Prediction: 1, Calibrated: &cal}, {Prediction: 2, CaseID: "7", Unseen: []UnseenValue{{Field: "x", Value: "é"}}}},
			Target: "bill", Hospital: "h", ModelVersion: "v", ModelDigest: "d", RequestID: "r"},
	} {
		got := r.appendJSON(nil)
		want, _ := json.Marshal(r)
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		json.Unmarshal(want, &w)
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("hand-written %s\nencoding/json %s", got, want)
		}
	}
}

func TestRotatingFileKeepsNFilesOfWholeLines(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "predictions.jsonl")
	if err := os.WriteFile(filepath.Join(dir, "predictions_notes.jsonl"), []byte("not ours"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := openRotating(path, 1000, 3)
	if err != nil {
		t.Fatal(err)
	}
	const lines = 400
	for i := range lines {
		if _, err := fmt.Fprintf(r, `{"n":%d,"pad":"%s"}`+"\n", i, strings.Repeat("x", i%40)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	rotated, err := r.rotated()
	if err != nil {
		t.Fatal(err)
	}
	if len(rotated) != 3 {
		t.Fatalf("%d rotated files, want 3: %v", len(rotated), rotated)
	}
	if _, err := os.Stat(filepath.Join(dir, "predictions_notes.jsonl")); err != nil {
		t.Errorf("a file that is not a rotated log was touched: %v", err)
	}
	// Oldest first, then the live file: whole lines, numbered in order
	// without a gap up to the last one written.
	next := -1
	for _, f := range append(rotated, path) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if f != path && (len(data) > 1000 || len(data) < 900) {
			t.Errorf("%s: %d bytes, want close to the 1000 it rotates at", filepath.Base(f), len(data))
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			var rec struct{ N int }
			if err := json.Unmarshal([]byte(l), &rec); err != nil {
				t.Fatalf("%s: line %q: %v", filepath.Base(f), l, err)
			}
			if next >= 0 && rec.N != next {
				t.Fatalf("%s: line %d after %d", filepath.Base(f), rec.N, next-1)
			}
			next = rec.N + 1
		}
	}
	if next != lines {
		t.Errorf("the last line is %d, want %d", next-1, lines-1)
	}
	// A restarted server appends to the live file.
	before, _ := os.ReadFile(path)
	r, err = openRotating(path, 1000, 3)
	if err != nil {
		t.Fatal(err)
	}
	r.Write([]byte("{}\n"))
	r.Close()
	after, _ := os.ReadFile(path)
	if len(before)+3 <= 1000 && !bytes.Equal(after, append(before, "{}\n"...)) {
		t.Error("reopening did not append to the live file")
	}
}
