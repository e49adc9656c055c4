package report_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"image"
	_ "image/png"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/pipelines/synth"
	"github.com/wardml/ward/pipelines/train"
	"github.com/wardml/ward/pipelines/train/report"
	"github.com/wardml/ward/pipelines/train/traintest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	trainOnce sync.Once
	trained   []*train.Result
)

// results trains a small synthetic group (two hospitals, nine months)
// once for the tests of this package.
func results(t *testing.T) []*train.Result {
	t.Helper()
	trainOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ward-report-test-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		sum, err := synth.Generate(context.Background(), dir, synth.WithEncryption("none"), synth.WithHospitals(2), synth.WithMonths(9))
		if err != nil {
			t.Fatal(err)
		}
		s, err := store.Open(context.Background(), "sqlite:"+filepath.Join(dir, "ward.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		hs := traintest.Load(t, s, sum.Contracts)
		trained, err = train.Run(context.Background(), s, hs, []string{"riverside", "st-olaf"})
		if err != nil {
			t.Fatal(err)
		}
	})
	if trained == nil {
		t.Fatal("training the group failed")
	}
	return trained
}

func TestRender(t *testing.T) {
	r := results(t)[1]
	files, err := report.Render(r)
	if err != nil {
		t.Fatal(err)
	}
	plots := []string{"candidates.png", "hospital-vs-pooled.png", "predicted-vs-actual.png", "residuals-over-time.png", "time-vs-random.png", "under-rate-by-segment.png"}
	want := []string{"model.json", "report/metrics.json", "report/report.html", "report/report.md"}
	for _, p := range plots {
		want = append(want, "report/"+p)
	}
	slices.Sort(want)
	if got := slices.Sorted(maps.Keys(files)); !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}

	// The artifact, as the next stages read it.
	a, err := models.Decode(files["model.json"])
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := a.Encode(); !bytes.Equal(again, files["model.json"]) || a.Version != r.Version || a.Hospital != "st-olaf" {
		t.Errorf("model.json: version %s, hospital %s", a.Version, a.Hospital)
	}

	// The plots are PNGs of the size the page expects, and the page
	// carries each of them inline, and nothing from elsewhere.
	page := string(files["report/report.html"])
	for _, p := range plots {
		data := files["report/"+p]
		cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
		if err != nil || format != "png" || cfg.Width != 576 || cfg.Height != 384 {
			t.Errorf("%s: %s %dx%d, %v", p, format, cfg.Width, cfg.Height, err)
		}
		if !strings.Contains(page, `src="data:image/png;base64,`+base64.StdEncoding.EncodeToString(data)+`"`) {
			t.Errorf("report.html does not inline %s", p)
		}
	}
	if strings.Count(page, "src=") != len(plots) || strings.Contains(page, "http") || !strings.HasPrefix(page, "<!DOCTYPE html>") {
		t.Errorf("report.html refers to other files, or is no page")
	}

	md := string(files["report/report.md"])
	for _, s := range []string{
		"# St Olaf General Hospital (st-olaf): model " + r.Version,
		"## Gate\n\nPASSED: no model in production",
		"| drop_if status in [cancelled] | ",
		"| cap_percentile total_bill at p99.5 | 0 | ",
		"Time split: trained on the ",
		"## Time split vs random split", "The random split's MAE (",
		"every choice (the ridge penalty, the learning rate and number of trees, the calibration shift, the family) was made on the inner validation",
		"## Model choice", "Ridge is the contract's only family.", "| ridge | ", "| inner mae (chosen on) | validation MAE |",
		"The same figures on the inner validation (",
		"## Per-hospital vs pooled", "The pooled model is one ridge regression over the cases of riverside, st-olaf",
		"## By segment", "### ward_class", "| A | ",
		"![Predicted vs actual on the validation window](predicted-vs-actual.png)",
		"| median APE | ", "calibrated (target under-estimate rate 20.0%)",
		"contract SHA-256: " + r.Lineage.Contract,
	} {
		if !strings.Contains(md, s) {
			t.Errorf("report.md lacks %q", s)
		}
	}
	// Both renderings say the same: every table cell of the Markdown is
	// in the page.
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| ---") {
			for _, cell := range strings.Split(strings.Trim(line, "| "), " | ") {
				if !strings.Contains(page, "<td>"+htmlText(cell)+"</td>") && !strings.Contains(page, "<th>"+htmlText(cell)+"</th>") {
					t.Fatalf("report.html lacks the cell %q", cell)
				}
			}
		}
	}

	var m map[string]any
	if err := json.Unmarshal(files["report/metrics.json"], &m); err != nil {
		t.Fatal(err)
	}
	if m["hospital"] != "st-olaf" || m["version"] != r.Version || m["gate"].(map[string]any)["passed"] != true ||
		m["validation"].(map[string]any)["mae"] != r.Validation.MAE || m["pooled"].(map[string]any)["metrics"] == nil {
		t.Errorf("metrics.json: %v", m)
	}

	// The same result renders the same bytes: no clock, no randomness.
	again, err := report.Render(r)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if !bytes.Equal(data, again[name]) {
			t.Errorf("%s differs from one rendering to the next", name)
		}
	}
}

func htmlText(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

func TestWrite(t *testing.T) {
	rs := results(t)
	out := filepath.Join(t.TempDir(), "models")
	sum, err := report.Write(out, rs, report.WithParallel(1))
	if err != nil {
		t.Fatal(err)
	}
	var fromFile report.Summary
	data, _ := os.ReadFile(filepath.Join(out, report.SummaryFile))
	if err := json.Unmarshal(data, &fromFile); err != nil || len(fromFile.Hospitals) != 2 {
		t.Fatalf("summary.json: %v\n%s", err, data)
	}
	for i, l := range fromFile.Hospitals {
		r := rs[i]
		if l.Hospital != r.Hospital || l.Version != r.Version || l.Rows != r.Rows || l.Gate != report.GatePassed || *l.ValidationMAE != r.Validation.MAE ||
			*l.PooledMAE != r.Pooled.Metrics.MAE || *l.RandomMAE != r.Comparison.Metrics.MAE || l.Model != filepath.Join(out, r.Hospital, report.ModelFile) || l.Error != "" {
			t.Errorf("summary line %+v", l)
		}
		if _, err := os.Stat(filepath.Join(out, r.Hospital, report.ReportDir, "report.html")); err != nil {
			t.Error(err)
		}
	}
	model, _ := os.ReadFile(filepath.Join(out, "st-olaf", report.ModelFile))

	// A later run replaces a folder whole, and leaves nothing else; a
	// hospital that failed keeps what the earlier run wrote.
	stray := filepath.Join(out, "st-olaf", "report", "old-plot.png")
	os.WriteFile(stray, []byte("x"), 0o644)
	failed := &train.Result{Hospital: "st-olaf", Rows: 10, Err: errors.New("train st-olaf: too few training rows"), Error: "train st-olaf: too few training rows"}
	sum, err = report.Write(out, []*train.Result{rs[0], failed})
	if err != nil {
		t.Fatal(err)
	}
	if l := sum.Hospitals[1]; l.Error != failed.Error || l.Model != "" || l.Gate != "" || l.ValidationMAE != nil {
		t.Errorf("line of a failed hospital: %+v", l)
	}
	if kept, _ := os.ReadFile(filepath.Join(out, "st-olaf", report.ModelFile)); !bytes.Equal(kept, model) {
		t.Error("a failed hospital lost the model of the earlier run")
	}
	sum, err = report.Write(out, rs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
		t.Error("a folder written again keeps a file of the earlier run")
	}
	entries, _ := os.ReadDir(out)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"riverside", "st-olaf", report.SummaryFile}) {
		t.Errorf("output folder holds %v", names)
	}

	var table bytes.Buffer
	sum.WriteTable(&table)
	if lines := strings.Split(strings.TrimSpace(table.String()), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "HOSPITAL") ||
		!strings.HasPrefix(lines[2], "st-olaf") || !strings.HasSuffix(lines[2], "passed") || !strings.Contains(lines[2], rs[1].Version) {
		t.Errorf("table:\n%s", table.String())
	}
}
