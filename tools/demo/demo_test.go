package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/tools/image"
	"github.com/wardml/ward/tools/site/sitetest"
)

// The demo runs the whole loop to its summary: every hospital serves a
// verified release from its agent, the bad model was flagged and rolled
// back by a revert commit, and the reports are where the summary says.
func TestDemoRunsTheLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes about half a minute; not in -short")
	}
	testenv.LookPath(t, "go", "golang-go")
	platform := "linux/" + runtime.GOARCH
	srv, err := image.BuildServer(context.Background(), "../..", image.DefaultServerPackage, []string{platform})
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "ward-serve")
	if err := os.WriteFile(bin, srv.Binaries[platform], 0o755); err != nil {
		t.Fatal(err)
	}
	// In a fresh folder, with the folder relative to it as `ward demo`
	// gives it by default.
	t.Chdir(t.TempDir())
	var story bytes.Buffer
	d, sum, err := Run(context.Background(), Options{Dir: filepath.Join(".ward", "demo"), Servers: map[string]string{platform: bin}, Out: &story})
	if err != nil {
		t.Fatalf("%v\n%s", err, story.String())
	}
	defer d.Close()
	var table bytes.Buffer
	sum.WriteSummary(&table)
	t.Logf("%s%s", story.String(), table.String())

	if len(sum.Hospitals) != 5 {
		t.Fatalf("summary of %d hospitals, want 5", len(sum.Hospitals))
	}
	for _, l := range sum.Hospitals {
		if !strings.HasPrefix(l.Version, "2025.11-") || strings.HasSuffix(l.Version, "-halved") || !strings.HasPrefix(l.Digest, "sha256:") {
			t.Errorf("%s runs %s %s; want its v2 (data to 2025-11), by digest", l.Hospital, l.Version, l.Digest)
		}
		if l.PooledMAE <= l.MAE {
			t.Errorf("%s: per-hospital MAE %.0f not below the pooled %.0f", l.Hospital, l.MAE, l.PooledMAE)
		}
		resp, err := http.Get(l.Endpoint + "/v1/model")
		if err != nil {
			t.Fatal(err)
		}
		var info struct{ Hospital, Version, Digest string }
		json.NewDecoder(resp.Body).Decode(&info)
		resp.Body.Close()
		if info.Hospital != l.Hospital || info.Version != l.Version || info.Digest != l.Digest {
			t.Errorf("%s's endpoint serves %+v, the summary says %s %s", l.Hospital, info, l.Version, l.Digest)
		}
	}
	if !slices.Contains(sum.Flagged, "lakeshore degraded and drifted") && !slices.Contains(sum.Flagged, "lakeshore degraded") {
		t.Errorf("feedback flagged %v; want lakeshore degraded", sum.Flagged)
	}
	if len(sum.RolledBack) != 1 || !strings.HasPrefix(sum.RolledBack[0], "lakeshore: ") {
		t.Errorf("rolled back %v; want lakeshore alone", sum.RolledBack)
	}
	log := testenv.Git(t, sum.Manifest, "log", "--format=%s", "main")
	if !strings.HasPrefix(log, `Revert "deploy(lakeshore): 2025.11-`) {
		t.Errorf("the manifest repo's last commit is not the revert of lakeshore's bad deploy:\n%s", log)
	}
	for what, file := range sum.Reports {
		if st, err := os.Stat(file); err != nil || st.Size() == 0 {
			t.Errorf("report %s: %s: %v", what, file, err)
		}
	}

	// The fleet view of the demo, opened in a real Chromium: every page
	// loads clean; the index shows every hospital and what it runs, and
	// the rollback; each hospital's page every version it ran and each
	// rollback.
	site := sitetest.Check(t, sitetest.Start(t), filepath.Dir(sum.Reports["site"]), "demo-site-index")
	index := site.Pages["index.html"].Text
	for _, l := range sum.Hospitals {
		if !strings.Contains(index, l.Hospital) || !strings.Contains(index, l.Version) || !strings.Contains(index, strings.TrimPrefix(l.Digest, "sha256:")[:12]) {
			t.Errorf("the site's index does not show %s running %s (%s):\n%s", l.Hospital, l.Version, l.Digest, index)
		}
		tl, err := d.deployer.History(context.Background(), l.Hospital)
		if err != nil {
			t.Fatal(err)
		}
		page := site.Pages["hospitals/"+l.Hospital+".html"]
		if page == nil {
			t.Fatalf("the site has no page of %s", l.Hospital)
		}
		for _, e := range tl.Events {
			if e.Release != nil && !strings.Contains(page.Text, e.Release.Version) || !strings.Contains(page.Text, e.Commit[:12]) {
				t.Errorf("%s's page does not show %s %s:\n%s", l.Hospital, e.Action, e.Commit, page.Text)
			}
			if e.Action == "rollback" && (!strings.Contains(index, e.Commit[:12]) || !strings.Contains(index, "-halved rolled back")) {
				t.Errorf("the index does not show %s's rollback %s:\n%s", l.Hospital, e.Commit, index)
			}
		}
	}
}
