package serving

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The log's hand-written JSON must say what encoding/json says.
func TestAppendStringAndFloatMatchEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "new\nline\ttab\rcr", "\x00\x01\x1f", "é ü 中文 🙂", "bad \xff utf-8", "<html>&"} {
		got := appendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("%q: %s is not JSON: %v", s, got, err)
			continue
		}
		want, _ := json.Marshal(s)
		var wantBack string
		json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q: reads back as %q, encoding/json's as %q", s, back, wantBack)
		}
	}
	for _, f := range []float64{0, 1, -1, 0.1, 1234.5, 108429.42, 1e-7, 1e21, 123456789012345678, math.SmallestNonzeroFloat64, math.MaxFloat64, -3.25e-5} {
		got := appendFloat(nil, f)
		want, _ := json.Marshal(f)
		if !bytes.Equal(got, want) {
			t.Errorf("%v: %s, encoding/json %s", f, got, want)
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
