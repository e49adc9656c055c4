package report_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"image"
	_ "image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/feedback"
	"github.com/wardml/ward/pipelines/feedback/report"
)

func ptr(v float64) *float64 { return &v }

// run is a report of two hospitals: riverside, whose current model is
// degraded and drifted after an older version with no artifact, and
// northgate, whose predictions hashed their inputs.
func run() *feedback.Report {
	t0 := time.Date(2024, 9, 1, 8, 0, 0, 0, time.UTC)
	val := models.Metrics{Count: 3100, MAE: 7880, RMSE: 15000, UnderRate: 0.46}
	drift := []feedback.FeatureDrift{
		{FeatureDrift: models.FeatureDrift{Feature: "age", PSI: 0.01, Band: models.Stable}, Bins: 11, Judged: true},
		{FeatureDrift: models.FeatureDrift{Feature: "ward_class", PSI: 0.12, Band: models.Watch}, Bins: 5, Judged: true},
		{FeatureDrift: models.FeatureDrift{Feature: "doctor_id", PSI: 0.62, Band: models.Act}, Bins: 33, Judged: true},
	}
	unpredicted := int64(120)
	return &feedback.Report{From: time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC), Hospitals: []feedback.Hospital{
		{Hospital: "riverside", Name: "Riverside Medical Centre", Current: "2024.08-658df4858c3d", Verdict: feedback.DegradedAndDrifted,
			Reason: "model 2024.08-658df4858c3d: live MAE 15,610 ...", Degraded: true, Drifted: true, Predictions: 3300, WithoutArtifact: 1,
			Unpredicted: &unpredicted, Degradation: 0.25, MinCases: 50, Models: []feedback.Model{
				{Version: "2023.12-legacy", Digests: []string{"sha256:aa"}, First: t0, Last: t0, Predictions: 1,
					Live: models.Metrics{Count: 1, MAE: 100, RMSE: 100}, Months: []feedback.Month{{Month: "2024-09", Metrics: models.Metrics{Count: 1, MAE: 100, RMSE: 100}}},
					Verdict: feedback.NoArtifact, Reason: "no artifact"},
				{Version: "2024.08-658df4858c3d", Digests: []string{"sha256:bb"}, First: t0, Last: t0.AddDate(0, 2, 20), Predictions: 3299, Artifact: true,
					Validation: &val, ValidationWindow: models.Window{From: "2024-06-01", To: "2024-08-31"},
					Live: models.Metrics{Count: 3135, MAE: 15610, RMSE: 25000, UnderRate: 0.8}, MAERatio: ptr(1.98), UnderRateChange: ptr(0.34),
					Months: []feedback.Month{
						{Month: "2024-09", Metrics: models.Metrics{Count: 1030, MAE: 13887, RMSE: 20000, UnderRate: 0.78}},
						{Month: "2024-10", Metrics: models.Metrics{Count: 1043, MAE: 15340, RMSE: 24000, UnderRate: 0.8}},
						{Month: "2024-11", Metrics: models.Metrics{Count: 1062, MAE: 17559, RMSE: 28000, UnderRate: 0.82}},
					},
					Drift: drift, DriftRows: 3299, Degraded: true, Drifted: true, Verdict: feedback.DegradedAndDrifted, Reason: "live MAE ...",
					Counts: feedback.Counts{WithoutCaseID: 60, AwaitingOutcome: 28, Repeated: 41}},
			}},
		{Hospital: "northgate", Name: "Northgate Hospital", Current: "2024.08-bd9276aa8bcd", Verdict: feedback.Healthy, Reason: "model ...",
			Predictions: 2400, Degradation: 0.25, MinCases: 50, Models: []feedback.Model{
				{Version: "2024.08-bd9276aa8bcd", Digests: []string{"sha256:cc"}, First: t0, Last: t0.AddDate(0, 2, 0), Predictions: 2400, Artifact: true,
					Validation: &models.Metrics{Count: 2000, MAE: 2172, RMSE: 4000, UnderRate: 0.45},
					Live:       models.Metrics{Count: 2288, MAE: 2589, RMSE: 4500, UnderRate: 0.5}, MAERatio: ptr(1.19),
					Months:    []feedback.Month{{Month: "2024-09", Metrics: models.Metrics{Count: 2288, MAE: 2589}}},
					DriftNote: "inputs hashed: drift not computed", Verdict: feedback.Healthy, Reason: "live MAE ...",
					Counts: feedback.Counts{InputsHashed: 2400}},
			}},
		{Hospital: "st-olaf", Error: "feedback st-olaf: database gone", Models: []feedback.Model{}},
	}}
}

// A hospital's report: Markdown and HTML say the same, the HTML inlines
// every plot, the plots are PNGs, and the same report renders the same
// bytes.
func TestRender(t *testing.T) {
	r := run()
	h := &r.Hospitals[0]
	files, err := report.Render(r, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{report.MarkdownFile, report.HTMLFile, report.ErrorPlot, report.PSIPlot} {
		if len(files[name]) == 0 {
			t.Fatalf("no %s in %v", name, len(files))
		}
	}
	md, html := string(files[report.MarkdownFile]), string(files[report.HTMLFile])
	for _, want := range []string{"DEGRADED AND DRIFTED", "2024.08-658df4858c3d (current)", "1.98x", "15,610", "7,880", "doctor_id | 33 | 0.620 | act | yes",
		"| 2024-10 | 1,043 | 15,340 |", "validation 2024-06-01 to 2024-08-31", "120 outcomes that no prediction names", "From 2024-09-01:",
		"1 predictions of versions with no artifact", "![", report.ErrorPlot, report.PSIPlot} {
		if !strings.Contains(md, want) {
			t.Errorf("the Markdown lacks %q", want)
		}
	}
	for _, name := range []string{report.ErrorPlot, report.PSIPlot} {
		img, _, err := image.Decode(bytes.NewReader(files[name]))
		if err != nil || img.Bounds().Dx() < 300 {
			t.Errorf("%s: %v", name, err)
		}
		if !strings.Contains(html, base64.StdEncoding.EncodeToString(files[name])) {
			t.Errorf("the page does not inline %s", name)
		}
	}
	rows := 0
	for _, l := range strings.Split(md, "\n") {
		if strings.HasPrefix(l, "|") && !strings.HasPrefix(l, "| --- |") {
			rows++
		}
	}
	if strings.Count(html, "<tr>") != rows || strings.Count(html, "<figure>") != strings.Count(md, "![") {
		t.Errorf("the page has %d table rows and %d figures, the Markdown %d and %d", strings.Count(html, "<tr>"), strings.Count(html, "<figure>"), rows, strings.Count(md, "!["))
	}
	again, err := report.Render(r, h)
	if err != nil || !reflect.DeepEqual(files, again) {
		t.Errorf("the same report rendered other bytes: %v", err)
	}

	// Hashed inputs: no drift plot, and the report says why.
	files, err = report.Render(r, &r.Hospitals[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := files[report.PSIPlot]; ok || !strings.Contains(string(files[report.MarkdownFile]), "Inputs hashed: drift not computed.") {
		t.Errorf("hashed inputs: %s", files[report.MarkdownFile])
	}
}

// Write puts each hospital's report in its folder and the run in
// feedback.json; a plot the run does not draw is not left from an earlier
// one, and a hospital that failed keeps its earlier report.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	for _, id := range []string{"northgate", "st-olaf"} {
		if err := os.MkdirAll(filepath.Join(dir, id), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, id, report.PSIPlot), []byte("earlier"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := run()
	if err := report.Write(dir, r); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"riverside/" + report.MarkdownFile, "riverside/" + report.HTMLFile, "riverside/" + report.PSIPlot,
		"northgate/" + report.MarkdownFile, "st-olaf/" + report.PSIPlot} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "northgate", report.PSIPlot)); !os.IsNotExist(err) {
		t.Errorf("northgate's plot of an earlier run is left: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, report.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	var back feedback.Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, r) {
		t.Errorf("feedback.json reads back as\n%+v\nwant\n%+v", back, *r)
	}
}

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	report.WriteTable(&b, run())
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	for i, want := range [][]string{
		{"HOSPITAL", "MODEL", "LIVE MAE", "VAL MAE", "RATIO", "HIGHEST PSI", "VERDICT"},
		{"riverside", "2024.08-658df4858c3d", "3,135", "15,610", "7,880", "1.98x", "80.0%", "doctor_id 0.620", "degraded and drifted"},
		{"northgate", "2024.08-bd9276aa8bcd", "2,288", "2,589", "2,172", "1.19x", "healthy"},
		{"st-olaf", "error: feedback st-olaf: database gone"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d lacks %q: %s", i, w, lines[i])
			}
		}
	}
}
