package site_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/models/modeltest"
	"github.com/wardml/ward/pipelines/feedback"
	feedbackreport "github.com/wardml/ward/pipelines/feedback/report"
	"github.com/wardml/ward/tools/heal"
	"github.com/wardml/ward/tools/manifest"
	"github.com/wardml/ward/tools/site"
	"github.com/wardml/ward/tools/site/sitetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func image(hospital, version string) manifest.Image {
	sum := sha256.Sum256([]byte(hospital + "/" + version))
	d := "sha256:" + hex.EncodeToString(sum[:])
	return manifest.Image{Ref: "registry.test/ward/" + hospital + "@" + d, Digest: d, Hospital: hospital, Version: version,
		Metrics: map[string]float64{"mae": 1000}}
}

// fixture is a small fleet: st-olaf deployed v1 then v2, v2 rolled back
// by feedback's evidence; mercy deployed v1 and rolled back by a person
// after a v2; a training run with a real fitted model; a feedback run.
func fixture(t *testing.T) (site.Input, string) {
	ctx := context.Background()
	remote := testenv.BareRepo(t)
	known := map[string]manifest.Image{}
	for _, hv := range []string{"st-olaf/v1", "st-olaf/v2", "mercy/v1", "mercy/v2"} {
		h, v, _ := strings.Cut(hv, "/")
		known[image(h, v).Ref] = image(h, v)
	}
	repo, err := manifest.New(remote, manifest.WithAuthor("Ward CI <ci@ward.invalid>"), manifest.WithVerifier(func(_ context.Context, ref string) (manifest.Image, error) {
		if i, ok := known[ref]; ok {
			return i, nil
		}
		return manifest.Image{}, errors.New("not signed")
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Init(ctx, false); err != nil {
		t.Fatal(err)
	}
	for _, hv := range []string{"st-olaf/v1", "mercy/v1", "st-olaf/v2", "mercy/v2"} {
		h, v, _ := strings.Cut(hv, "/")
		if _, err := repo.Deploy(ctx, manifest.Deployment{Hospital: h, Image: image(h, v).Ref}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := repo.Rollback(ctx, manifest.Rollback{Hospital: "st-olaf", Note: "Rolled back by ward feedback --apply.", Trailers: []manifest.Trailer{
		{Key: "Ward-Verdict", Value: "degraded"}, {Key: "Ward-Live-MAE", Value: "1,900"}, {Key: "Ward-Validation-MAE", Value: "1,000"},
		{Key: "Ward-MAE-Ratio", Value: "1.900"}, {Key: "Ward-Cases", Value: "300"}, {Key: "Ward-Window", Value: "2025-02-01T00:00:00Z/2025-02-27T00:00:00Z"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Rollback(ctx, manifest.Rollback{Hospital: "mercy"}); err != nil {
		t.Fatal(err)
	}
	tls, err := heal.Histories(ctx, repo, []string{"st-olaf", "mercy"})
	if err != nil {
		t.Fatal(err)
	}

	// A training run: one real model of st-olaf, its report beside it.
	train := filepath.Join(t.TempDir(), "models-v1")
	fitted := modeltest.StOlaf(t, 400, 1, 1)
	write(t, filepath.Join(train, "st-olaf", "model.json"), string(fitted.Data))
	write(t, filepath.Join(train, "st-olaf", "report", "report.html"), "<!doctype html><html><head><meta charset=utf-8><title>report</title></head><body><p>the report</p></body></html>")

	// A feedback run: st-olaf's v2 degraded, in two months.
	ratio := 1.9
	m := feedback.Model{Version: "v2", Artifact: true, Live: models.Metrics{Count: 300, MAE: 1900}, Validation: &models.Metrics{MAE: 1000, Count: 200},
		MAERatio: &ratio, Degraded: true, Verdict: feedback.Degraded, Reason: "worse", First: time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC),
		Last: time.Date(2025, 3, 27, 0, 0, 0, 0, time.UTC), Digests: []string{image("st-olaf", "v2").Digest},
		Months: []feedback.Month{{Month: "2025-02", Metrics: models.Metrics{Count: 150, MAE: 1800}}, {Month: "2025-03", Metrics: models.Metrics{Count: 150, MAE: 2000}}}}
	r := &feedback.Report{Hospitals: []feedback.Hospital{
		{Hospital: "st-olaf", Name: "St Olaf", Current: "v2", Verdict: feedback.Degraded, Degraded: true, Reason: "model v2: worse", Models: []feedback.Model{m},
			Predictions: 300, Degradation: 0.25, MinCases: 50},
		{Hospital: "mercy", Name: "Mercy", Verdict: feedback.NoPredictions, Reason: "no predictions served in the window", Models: []feedback.Model{}, Degradation: 0.25, MinCases: 50},
	}}
	fb := filepath.Join(t.TempDir(), "feedback")
	if err := feedbackreport.Write(fb, r); err != nil {
		t.Fatal(err)
	}
	hs := []*contract.Hospital{{ID: "st-olaf", Name: "St Olaf"}, {ID: "mercy", Name: "Mercy"}}
	return site.Input{Hospitals: hs, Timelines: tls, Training: []string{train}, Feedback: []string{fb}}, fitted.Artifact.Version
}

func write(t *testing.T, file, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The site opens in a real Chromium from file://: every page without a
// console error, a failed load, a broken link or image; the index shows
// each hospital, its live version and its last rollback with the reason.
// A site broken on purpose (an image gone, a link astray, a fetch from
// outside) is caught.
func TestSiteInChromium(t *testing.T) {
	in, version := fixture(t)
	out := filepath.Join(t.TempDir(), "site")
	s, err := site.Write(out, in)
	if err != nil {
		t.Fatal(err)
	}
	wantPages := []string{"index.html", "hospitals/st-olaf.html", "hospitals/mercy.html", "runs/train-models-v1.html", "runs/feedback-feedback.html"}
	for _, p := range wantPages {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Errorf("no page %s: %v (pages %v)", p, err, s.Pages)
		}
	}
	b := sitetest.Start(t)
	got := sitetest.Check(t, b, out, "site-fixture-index")
	index := got.Pages["index.html"].Text
	for _, want := range []string{"st-olaf", "St Olaf", "mercy", "v1", "v2 rolled back", "ward feedback: degraded, live MAE 1,900 against the validation MAE 1,000 (1.900x) over 300 cases",
		"by hand (ward rollback or git revert), by Ward CI", "degraded", "1,000"} {
		if !strings.Contains(index, want) {
			t.Errorf("the index does not show %q:\n%s", want, index)
		}
	}
	olaf := got.Pages["hospitals/st-olaf.html"]
	for _, want := range []string{"deploy", "rollback", version, "model v2: worse"} {
		if !strings.Contains(olaf.Text, want) {
			t.Errorf("st-olaf's page does not show %q:\n%s", want, olaf.Text)
		}
	}
	// The live error by month (no inputs were logged: no PSI plot).
	if len(olaf.Images) != 1 || !strings.HasSuffix(olaf.Images[0].Src, feedbackreport.ErrorPlot) {
		t.Errorf("st-olaf's page shows %+v; want the error plot", olaf.Images)
	}
	if len(got.Pages["index.html"].Screenshot) < 1000 {
		t.Errorf("the index's screenshot is %d bytes", len(got.Pages["index.html"].Screenshot))
	}

	// Broken on purpose: each is found.
	os.Remove(filepath.Join(out, "feedback", "feedback-feedback", "st-olaf", feedbackreport.ErrorPlot))
	os.Remove(filepath.Join(out, "runs", "train-models-v1.html"))
	page := filepath.Join(out, "hospitals", "mercy.html")
	data, _ := os.ReadFile(page)
	os.WriteFile(page, []byte(strings.Replace(string(data), "</main>", `<img src="http://192.0.2.1/x.png" alt="x"><a href="https://example.invalid/">out</a></main>`, 1)), 0o644)
	broken, err := b.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(broken.Problems, "\n")
	for _, want := range []string{"broken image file://", "feedback-error.png", "broken link file://", "train-models-v1.html", "fetched from outside the site: http://192.0.2.1/x.png", "broken link https://example.invalid/"} {
		if !strings.Contains(all, want) {
			t.Errorf("a broken site: no problem with %q among:\n%s", want, all)
		}
	}
}
