// Package site writes the fleet view, `ward site`: a static site of plain
// HTML and the PNG plots the reports already have, readable from file://
// and from any static host (no script, nothing fetched from elsewhere). It
// reads what the loop leaves: the manifest repo's history of each hospital
// (what runs, since when, by which commit, what was rolled back and why),
// the folders of ward train (the models and their reports) and of ward
// feedback (live error, verdicts, what the policy did). It sits at the end
// of the loop, beside feedback, for the people who watch it.
package site

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/page"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/feedback"
	feedbackreport "github.com/wardml/ward/pipelines/feedback/report"
	trainreport "github.com/wardml/ward/pipelines/train/report"
	"github.com/wardml/ward/tools/heal"
	"github.com/wardml/ward/tools/manifest"
)

// Input is what the site is made of.
type Input struct {
	// Hospitals, in the order of the index.
	Hospitals []*contract.Hospital
	// Timelines are the hospitals' histories in the manifest repo.
	Timelines map[string]*manifest.Timeline
	// Training are folders that ward train --out wrote (model.json at any
	// depth, its report/ beside it): a run page each.
	Training []string
	// Feedback are folders that ward feedback --out wrote, oldest first:
	// a run page each; the last one gives the index its live error.
	Feedback []string
}

// Site is what Write wrote, for the caller to tell.
type Site struct {
	Dir   string   `json:"dir"`
	Index string   `json:"index"`
	Pages []string `json:"pages"`
}

// The site's files.
const (
	IndexFile = "index.html"
	styleFile = "style.css"
)

// Write writes the site into out (its old pages are replaced).
func Write(out string, in Input) (*Site, error) {
	b := &builder{out: out, in: in, reports: map[string]string{}}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("site %s: %w", out, err)
	}
	for _, dir := range in.Training {
		if err := b.readTraining(dir); err != nil {
			return nil, err
		}
	}
	for _, dir := range in.Feedback {
		if err := b.readFeedback(dir); err != nil {
			return nil, err
		}
	}
	if err := b.write(styleFile, []byte(style)); err != nil {
		return nil, err
	}
	if err := b.render(IndexFile, "index", b.index()); err != nil {
		return nil, err
	}
	for _, h := range in.Hospitals {
		if err := b.render(path.Join("hospitals", h.ID+".html"), "hospital", b.hospital(h)); err != nil {
			return nil, err
		}
	}
	for _, r := range b.training {
		if err := b.render(path.Join("runs", r.Name+".html"), "training", runPage{Title: "ward: " + r.Name, Root: "../", Run: r}); err != nil {
			return nil, err
		}
	}
	for _, r := range b.feedback {
		if err := b.render(path.Join("runs", r.Name+".html"), "feedback", runPage{Title: "ward: " + r.Name, Root: "../", Run: r}); err != nil {
			return nil, err
		}
	}
	return &Site{Dir: out, Index: filepath.Join(out, IndexFile), Pages: b.pages}, nil
}

type builder struct {
	out      string
	in       Input
	training []*trainingRun
	feedback []*feedbackRun
	// reports: hospital/version -> the site path of its report.html.
	reports map[string]string
	names   []string
	pages   []string
}

type trainingRun struct {
	Name, Dir string
	Models    []trainedModel
}

type trainedModel struct {
	Hospital, Version string
	Validation        models.Metrics
	// Report is the site path of its report.html, "" without one.
	Report string
}

type feedbackRun struct {
	Name, Dir string
	Report    *feedback.Report
	Plan      *feedback.Plan
	// Plots: hospital -> site paths of its PNGs; Reports: its feedback.html.
	Plots   map[string][]string
	Reports map[string]string
}

// runName names a run by its folder, once.
func (b *builder) runName(kind, dir string) string {
	base := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '-'
	}, filepath.Base(filepath.Clean(dir)))
	name := kind + "-" + base
	for i := 2; slices.Contains(b.names, name); i++ {
		name = fmt.Sprintf("%s-%s-%d", kind, base, i)
	}
	b.names = append(b.names, name)
	return name
}

func (b *builder) readTraining(dir string) error {
	run := &trainingRun{Name: b.runName("train", dir), Dir: dir}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != trainreport.ModelFile {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		a, err := models.Decode(data)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		m := trainedModel{Hospital: a.Hospital, Version: a.Version, Validation: a.Metrics["validation"].Metrics}
		key := a.Hospital + "/" + a.Version
		if have, ok := b.reports[key]; ok {
			m.Report = have
		} else if src := filepath.Join(filepath.Dir(p), trainreport.ReportDir); isDir(src) {
			dst := path.Join("reports", a.Hospital, a.Version)
			if err := b.copyDir(src, dst); err != nil {
				return err
			}
			m.Report = path.Join(dst, "report.html")
			b.reports[key] = m.Report
		}
		run.Models = append(run.Models, m)
		return nil
	})
	if err != nil {
		return fmt.Errorf("site: training run %s: %w", dir, err)
	}
	slices.SortFunc(run.Models, func(x, y trainedModel) int { return strings.Compare(x.Hospital+x.Version, y.Hospital+y.Version) })
	b.training = append(b.training, run)
	return nil
}

func (b *builder) readFeedback(dir string) error {
	run := &feedbackRun{Name: b.runName("feedback", dir), Dir: dir, Plots: map[string][]string{}, Reports: map[string]string{}}
	data, err := os.ReadFile(filepath.Join(dir, feedbackreport.JSONFile))
	if err != nil {
		return fmt.Errorf("site: feedback run %s: %w (want the folder ward feedback --out wrote)", dir, err)
	}
	if err := json.Unmarshal(data, &run.Report); err != nil {
		return fmt.Errorf("site: %s: %w", filepath.Join(dir, feedbackreport.JSONFile), err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, feedbackreport.PlanFile)); err == nil {
		if err := json.Unmarshal(data, &run.Plan); err != nil {
			return fmt.Errorf("site: %s: %w", filepath.Join(dir, feedbackreport.PlanFile), err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("site: %w", err)
	}
	for _, h := range run.Report.Hospitals {
		for _, f := range []string{feedbackreport.ErrorPlot, feedbackreport.PSIPlot, feedbackreport.HTMLFile} {
			src := filepath.Join(dir, h.Hospital, f)
			if _, err := os.Stat(src); err != nil {
				continue
			}
			dst := path.Join("feedback", run.Name, h.Hospital, f)
			if err := b.copyFile(src, dst); err != nil {
				return err
			}
			if f == feedbackreport.HTMLFile {
				run.Reports[h.Hospital] = dst
			} else {
				run.Plots[h.Hospital] = append(run.Plots[h.Hospital], dst)
			}
		}
	}
	b.feedback = append(b.feedback, run)
	return nil
}

// runPage is a run's page: a *trainingRun or a *feedbackRun.
type runPage struct {
	Title, Root string
	Run         any
}

// The index: a row per hospital.

type indexPage struct {
	Title    string
	Root     string
	Rows     []indexRow
	Training []*trainingRun
	Feedback []*feedbackRun
	Latest   *feedbackRun
}

type indexRow struct {
	ID, Name      string
	Live          *manifest.Release
	Since         *manifest.Event
	ValidationMAE string
	LiveMAE       string
	Verdict       string
	// Judged is the version the verdict is about, when it is not the live one.
	Judged       string
	Degraded     bool
	Drifted      bool
	LastRollback *rollbackView
	Problem      string
}

type rollbackView struct {
	Event   *manifest.Event
	Removed string
	Reason  string
}

func (b *builder) latest() *feedbackRun {
	if len(b.feedback) == 0 {
		return nil
	}
	return b.feedback[len(b.feedback)-1]
}

func (b *builder) index() indexPage {
	p := indexPage{Title: "ward: the fleet", Training: b.training, Feedback: b.feedback, Latest: b.latest()}
	for _, h := range b.in.Hospitals {
		p.Rows = append(p.Rows, b.row(h))
	}
	return p
}

func (b *builder) row(h *contract.Hospital) indexRow {
	r := indexRow{ID: h.ID, Name: h.Name, ValidationMAE: "-", LiveMAE: "-"}
	t := b.in.Timelines[h.ID]
	if t != nil {
		r.Live, r.Problem = t.Live, t.Problem
		if l := heal.Live(t); l != nil {
			r.Since = event(t, l.Commit)
		}
		if r.Live != nil {
			if mae, ok := r.Live.Metrics["mae"]; ok {
				r.ValidationMAE = page.Num(mae)
			}
		}
		r.LastRollback = lastRollback(t)
	}
	if f := b.latest(); f != nil {
		if fh := hospitalOf(f.Report, h.ID); fh != nil {
			r.Verdict, r.Degraded, r.Drifted = fh.Verdict, fh.Degraded, fh.Drifted
			if r.Live == nil || fh.Current != r.Live.Version {
				r.Judged = fh.Current
			}
			if r.Live != nil {
				if m := fh.Model(r.Live.Version); m != nil && m.Live.Count > 0 {
					r.LiveMAE = page.Num(m.Live.MAE) + " (" + page.Count(m.Live.Count) + " cases)"
				}
			}
		}
	}
	return r
}

func hospitalOf(r *feedback.Report, id string) *feedback.Hospital {
	for i := range r.Hospitals {
		if r.Hospitals[i].Hospital == id {
			return &r.Hospitals[i]
		}
	}
	return nil
}

func event(t *manifest.Timeline, sha string) *manifest.Event {
	for i := range t.Events {
		if t.Events[i].Commit == sha {
			return &t.Events[i]
		}
	}
	return nil
}

// lastRollback is the newest rollback of a timeline and why: the evidence
// ward feedback --apply put in its trailers, else a person's revert.
func lastRollback(t *manifest.Timeline) *rollbackView {
	for i := range t.Events {
		e := &t.Events[i]
		if e.Action != manifest.ActionRollback {
			continue
		}
		v := &rollbackView{Event: e, Reason: "by hand (ward rollback or git revert), by " + e.Author}
		if undone := event(t, e.Reverts); undone != nil && undone.Release != nil {
			v.Removed = undone.Release.Version
		}
		tr := map[string]string{}
		for _, x := range e.Trailers {
			tr[x.Key] = x.Value
		}
		if verdict := tr["Ward-Verdict"]; verdict != "" {
			v.Reason = fmt.Sprintf("ward feedback: %s, live MAE %s against the validation MAE %s (%sx) over %s cases, %s",
				verdict, tr["Ward-Live-MAE"], tr["Ward-Validation-MAE"], tr["Ward-MAE-Ratio"], tr["Ward-Cases"], strings.ReplaceAll(tr["Ward-Window"], "/", " to "))
		}
		return v
	}
	return nil
}

// A hospital's page.

type hospitalPage struct {
	Title    string
	Root     string
	Row      indexRow
	Events   []eventView
	Reports  []trainedModel
	Feedback []hospitalFeedback
}

type eventView struct {
	*manifest.Event
	Reason string
}

type hospitalFeedback struct {
	Run      *feedbackRun
	Hospital *feedback.Hospital
	Decision *feedback.Decision
	Plots    []string
	Report   string
}

func (b *builder) hospital(h *contract.Hospital) hospitalPage {
	p := hospitalPage{Title: "ward: " + h.ID, Root: "../", Row: b.row(h)}
	if t := b.in.Timelines[h.ID]; t != nil {
		for i := range t.Events {
			e := &t.Events[i]
			v := eventView{Event: e}
			if e.Action == manifest.ActionRollback {
				one := *t
				one.Events = t.Events[i:]
				if rb := lastRollback(&one); rb != nil {
					v.Reason = rb.Reason
				}
			}
			p.Events = append(p.Events, v)
		}
	}
	seen := map[string]bool{}
	for _, r := range b.training {
		for _, m := range r.Models {
			if m.Hospital == h.ID && !seen[m.Version] {
				seen[m.Version] = true
				p.Reports = append(p.Reports, m)
			}
		}
	}
	for i := len(b.feedback) - 1; i >= 0; i-- {
		r := b.feedback[i]
		fh := hospitalOf(r.Report, h.ID)
		if fh == nil {
			continue
		}
		hf := hospitalFeedback{Run: r, Hospital: fh, Plots: r.Plots[h.ID], Report: r.Reports[h.ID]}
		if r.Plan != nil {
			for j := range r.Plan.Decisions {
				if r.Plan.Decisions[j].Hospital == h.ID {
					hf.Decision = &r.Plan.Decisions[j]
				}
			}
		}
		p.Feedback = append(p.Feedback, hf)
	}
	return p
}

// Rendering.

func (b *builder) render(name, tmpl string, data any) error {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, tmpl, data); err != nil {
		return fmt.Errorf("site %s: %w", name, err)
	}
	b.pages = append(b.pages, name)
	return b.write(name, buf.Bytes())
}

func (b *builder) write(name string, data []byte) error {
	file := filepath.Join(b.out, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("site: %w", err)
	}
	if err := page.WriteFile(file, data); err != nil {
		return fmt.Errorf("site: %w", err)
	}
	return nil
}

func (b *builder) copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("site: %w", err)
	}
	return b.write(dst, data)
}

func (b *builder) copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		return b.copyFile(p, path.Join(dst, filepath.ToSlash(rel)))
	})
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func shortSHA(s string) string {
	s = strings.TrimPrefix(s, "sha256:")
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

var pages = template.Must(template.New("site").Funcs(template.FuncMap{
	"short": shortSHA,
	"when":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
	"day":   func(t time.Time) string { return t.UTC().Format(time.DateOnly) },
	"num":   page.Num,
	"count": page.Count[int],
	"ratio": func(r *float64) string {
		if r == nil {
			return "-"
		}
		return fmt.Sprintf("%.2fx", *r)
	},
	"valmae": func(m *models.Metrics) string {
		if m == nil {
			return "-"
		}
		return page.Num(m.MAE)
	},
}).Parse(templates))
