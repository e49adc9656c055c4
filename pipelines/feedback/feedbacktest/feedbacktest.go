// Package feedbacktest runs the whole loop up to feedback, for the tests
// of feedback and of `ward feedback`, with every part real: a synthetic
// group (pipelines/synth, optionally with a price shock), its extracts
// dropped on ward's in-process SFTP server and ingested into the database
// up to a cutoff month, one model per hospital trained on them
// (pipelines/train), each served by the real model server (serving, in
// process, over HTTP) with the cases of the months after the cutoff, the
// server's prediction log dropped beside the later extracts as the
// hospital would drop it, and both ingested (pipelines/ingest). It is a
// fixture for tests, like traintest: nothing in it is a stand-in.
//
// On PostgreSQL the servers also write each prediction to the database
// directly (--predictions-db), as a hospital's server may: the logs
// ingested after them then add only what no server wrote, and count the
// rest as duplicates. The two ways in meet in one table, each prediction
// once.
//
// The hospital's client misbehaves in known ways, so that feedback's
// counts can be checked exactly: it never sends some cases, sends some
// without their case id, and sends some twice; its log holds a malformed
// line, a line repeated, a prediction of a model version ward never
// trained, and two files that overlap.
package feedbacktest

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/sftpd/sftptest"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/ingest"
	"github.com/wardml/ward/pipelines/ingest/decrypt"
	"github.com/wardml/ward/pipelines/ingest/fetch"
	"github.com/wardml/ward/pipelines/ingest/staging"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/pipelines/synth"
	"github.com/wardml/ward/pipelines/train"
	trainreport "github.com/wardml/ward/pipelines/train/report"
	"github.com/wardml/ward/pipelines/train/traintest"
	"github.com/wardml/ward/serving"
)

// The group: three hospitals, eleven months from January 2024. The models
// are trained on January to August (validated on June to August) and
// serve September to November.
const (
	Hospitals = 3
	Months    = 11
	Start     = "2024-01"
	Cutoff    = "2024-09"
)

// LegacyVersion is the model version of the log line that no artifact has.
const LegacyVersion = "2023.12-legacy000000"

// Loop is the state the loop left.
type Loop struct {
	// Contracts is the folder of the contracts (WARD_HOSPITALS); Models
	// the models, in the layout of ward train --out.
	Contracts string
	Models    string
	Hospitals []*contract.Hospital
	Artifacts []*models.Artifact
	// Ingest is what the last ingest run did: the later extracts and the
	// prediction logs.
	Ingest *ingest.Summary
	// Sent says, per hospital, what its client sent.
	Sent map[string]*Sent
	// Direct says whether the servers wrote their predictions to the
	// database themselves (on PostgreSQL).
	Direct bool
}

// Sent is what a hospital's client sent its model server, and what its
// log holds beside the server's lines.
type Sent struct {
	// Answered counts the instances the server answered (its log lines).
	Answered int
	// Cases counts the distinct cases sent with their case id.
	Cases int
	// Billed counts those of them whose bill is known (the outcomes).
	Billed int
	// Unbilled counts those of them with no bill (cancelled cases).
	Unbilled int
	// WithoutID counts the instances sent without their case id.
	WithoutID int
	// Unnamed counts the billed cases of the live months that no
	// prediction names: never sent, or sent without their case id.
	Unnamed int
	// Repeated counts the cases sent a second time, in another request.
	Repeated int
	// Malformed, Duplicated, Overlap and Legacy describe the log: one
	// malformed line, one line written twice, the lines the second log
	// file repeats from the first, and the predictions of LegacyVersion.
	Malformed, Duplicated, Overlap, Legacy int
}

// Run runs the loop for a group with the given shocks into the database
// at url (empty, or holding nothing of these hospitals).
func Run(t testing.TB, url string, shocks ...synth.Shock) *Loop {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	start, _ := synth.ParseMonth(Start)
	sum, err := synth.Generate(ctx, filepath.Join(dir, "group"), synth.WithHospitals(Hospitals), synth.WithMonths(Months),
		synth.WithStart(start), synth.WithEncryption("none"), synth.WithDirt(0), synth.WithShocks(shocks...))
	if err != nil {
		t.Fatal(err)
	}
	hs, err := contract.LoadAll(sum.Contracts)
	if err != nil {
		t.Fatal(err)
	}
	l := &Loop{Contracts: sum.Contracts, Models: filepath.Join(dir, "models"), Hospitals: hs, Sent: map[string]*Sent{},
		Direct: strings.HasPrefix(url, "postgres")}

	// The drop box gets the months before the cutoff; ingest loads them.
	box := filepath.Join(dir, "sftp")
	drop(t, sum.SFTP, box, func(month string) bool { return month < Cutoff })
	src := startSFTP(t, box)
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stage, err := staging.Open(filepath.Join(dir, "staging"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := decrypt.Load()
	if err != nil {
		t.Fatal(err)
	}
	checkIngest(t, ingest.Run(ctx, hs, src, st, stage, keys, ingest.WithSettle(50*time.Millisecond)))

	// One model per hospital, written as ward train writes it.
	ids := make([]string, len(hs))
	for i, h := range hs {
		ids[i] = h.ID
	}
	results, err := train.Run(ctx, st, hs, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		data, err := r.Artifact.Encode()
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(l.Models, r.Hospital, trainreport.ModelFile)
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		l.Artifacts = append(l.Artifacts, r.Artifact)
	}

	// Each hospital's client asks its server about the cases after the
	// cutoff (their inputs are read from the whole group, loaded apart:
	// what the hospital knows at pre-admission); the log goes into the
	// drop box beside the later extracts.
	inputs, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "inputs.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer inputs.Close()
	if _, err := traintest.LoadGroup(inputs, sum.Contracts); err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		model := filepath.Join(l.Models, h.ID, trainreport.ModelFile)
		db := ""
		if l.Direct {
			db = url
		}
		lines, sent := serve(t, inputs, h, results[i].Artifact, model, db)
		l.Sent[h.ID] = sent
		dropLog(t, box, h, lines, sent)
	}
	drop(t, sum.SFTP, box, func(month string) bool { return month >= Cutoff })
	l.Ingest = ingest.Run(ctx, hs, src, st, stage, keys, ingest.WithSettle(50*time.Millisecond),
		ingest.WithModelVersions(func(_ context.Context, hospital string) ([]string, error) {
			var known []string
			for _, a := range l.Artifacts {
				if a.Hospital == hospital {
					known = append(known, a.Version)
				}
			}
			return known, nil
		}))
	checkIngest(t, l.Ingest)
	return l
}

// drop copies the extracts of the months that keep selects from the
// group's drop box to box, as the hospitals upload them.
func drop(t testing.TB, from, box string, keep func(month string) bool) {
	t.Helper()
	if _, err := synth.Upload(from, box, keep); err != nil {
		t.Fatal(err)
	}
}

// startSFTP serves box with ward's in-process SFTP server, and dials it.
func startSFTP(t testing.TB, box string) *fetch.SFTP {
	t.Helper()
	s := sftptest.Start(t, box)
	c, err := fetch.Dial(context.Background(), fetch.SFTPConfig{URL: s.URL, Key: s.Key, KnownHosts: s.KnownHosts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// checkIngest fails the test on a file that did not load.
func checkIngest(t testing.TB, sum *ingest.Summary) {
	t.Helper()
	for _, h := range sum.Hospitals {
		if h.Error != "" {
			t.Fatalf("ingest %s: %s", h.Hospital, h.Error)
		}
		for _, f := range h.Files {
			if f.Outcome != ingest.Loaded && f.Outcome != ingest.Skipped && f.Outcome != ingest.Duplicate {
				t.Fatalf("%s", f.Message())
			}
		}
	}
}

// serve starts the hospital's model server (writing to the database at
// db too, when set), sends it the cases of the months from the cutoff on,
// and returns its prediction log lines.
func serve(t testing.TB, inputs *store.Store, h *contract.Hospital, a *models.Artifact, model, db string) ([][]byte, *Sent) {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	flags := serving.BindFlags(fs)
	args := []string{"--model", model, "--listen", "127.0.0.1:0", "--watch", "0", "--id-field", h.Training.ID}
	if db != "" {
		args = append(args, "--predictions-db", db)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg, err := flags.Config(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	srv, err := serving.New(cfg, serving.WithStdout(&log))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	// One X-Request-Id for every request, as a careless client sends: the
	// server's own ids keep every prediction apart (issue 14).
	client := &synth.Client{URL: "http://" + ln.Addr().String(), Header: http.Header{"X-Request-Id": {"one-fixed-client-id"}}}
	names := make([]string, len(a.Inputs))
	for i, c := range a.Inputs {
		names[i] = c.Name
	}
	cutoff, _ := synth.ParseMonth(Cutoff)
	sent := &Sent{}
	var batch, again []map[string]any
	send := func(instances []map[string]any) {
		if len(instances) == 0 {
			return
		}
		if err := client.Predict(context.Background(), instances, cfg.MaxBatch); err != nil {
			t.Fatalf("%s: %v", h.ID, err)
		}
		sent.Answered += len(instances)
	}
	n := 0
	for c, err := range synth.Cases(context.Background(), inputs, h, names, func(at time.Time) bool { return !at.Before(cutoff) }) {
		if err != nil {
			t.Fatal(err)
		}
		req := c.Inputs
		switch n++; {
		case n%40 == 7:
			if c.Billed {
				sent.Unnamed++
			}
			continue
		case n%50 == 3:
			sent.WithoutID++
			if c.Billed {
				sent.Unnamed++
			}
		default:
			req[h.Training.ID] = c.ID
			sent.Cases++
			if c.Billed {
				sent.Billed++
			} else {
				sent.Unbilled++
			}
			if n%60 == 5 {
				again = append(again, req)
			}
		}
		if batch = append(batch, req); len(batch) == cfg.MaxBatch {
			send(batch)
			batch = nil
		}
	}
	send(batch)
	send(again)
	sent.Repeated = len(again)
	stop()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(log.Bytes(), []byte("\n"))
	if last := lines[len(lines)-1]; len(last) == 0 {
		lines = lines[:len(lines)-1]
	}
	if len(lines) != sent.Answered {
		t.Fatalf("%s: %d prediction log lines for %d answers", h.ID, len(lines), sent.Answered)
	}
	return lines, sent
}

// dropLog writes the server's log lines as the hospital drops them: two
// files that overlap (a rotated log copied twice), with a malformed line,
// a line written twice, and a prediction of a version ward never trained,
// served long before the others.
func dropLog(t testing.TB, box string, h *contract.Hospital, lines [][]byte, sent *Sent) {
	t.Helper()
	var legacy map[string]any
	if err := json.Unmarshal(lines[1], &legacy); err != nil {
		t.Fatal(err)
	}
	legacy["ward.model.version"], legacy["ward.request_id"], legacy["@timestamp"] = LegacyVersion, "legacy-1", "2023-12-20T09:00:00.000Z"
	delete(legacy, "ward.server_request_id") // an older server's line: keyed by its request id
	old, err := json.Marshal(legacy)
	if err != nil {
		t.Fatal(err)
	}
	half := len(lines) / 2
	const overlap = 5
	first := slices.Concat(lines[:half+overlap], [][]byte{lines[0], []byte(`{"@timestamp": "2024-`), append(old, '\n')})
	second := lines[half:]
	sent.Malformed, sent.Duplicated, sent.Overlap, sent.Legacy = 1, 1, overlap, 1
	for name, ls := range map[string][][]byte{"predictions_2024-10.jsonl": first, "predictions_2024-11.jsonl": second} {
		var b []byte
		for _, l := range ls {
			b = append(b, l...)
			if !strings.HasSuffix(string(l), "\n") {
				b = append(b, '\n')
			}
		}
		if err := synth.DropLog(box, h, name, b, nil); err != nil {
			t.Fatal(err)
		}
	}
}
