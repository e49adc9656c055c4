package train_test

import (
	"bytes"
	"context"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/train"
	"github.com/wardml/ward/pipelines/train/traintest"
)

// The synthetic group, loaded through ingest's parser into each engine,
// trained as `ward train --all` trains it: the two findings of the design
// show up in what training reports, the artifacts are the same bytes run
// after run, hospital by hospital or all at once, and on either engine.
func TestSynthGroup(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("trains the whole synthetic group on two engines (-short, or the race detector, which the smaller tests feed the same concurrent code)")
	}
	ctx := context.Background()
	contracts := traintest.Group(t)
	artifacts := map[string]map[string][]byte{}
	engines(t, func(t *testing.T, engine, url string) {
		s := open(t, url)
		hs := traintest.Load(t, s, contracts)
		rs, err := train.Run(ctx, s, hs, idsOf(hs))
		if err != nil {
			t.Fatal(err)
		}
		version := regexp.MustCompile(`^2025\.12-[0-9a-f]{12}$`)
		artifacts[engine] = map[string][]byte{}
		for _, r := range rs {
			if r.Err != nil {
				t.Fatalf("%s: %v", r.Hospital, r.Err)
			}
			h := byID(hs, r.Hospital)
			a := r.Artifact
			v := r.Validation
			t.Logf("%-10s %s: MAE %.0f, pooled %.0f, random split %.0f; %d cases, %d validated", r.Hospital, r.Version, v.MAE, r.Pooled.Metrics.MAE, r.Comparison.Metrics.MAE, r.Rows, v.Count)

			// The findings: a model per hospital beats the pooled one on the
			// hospital's own validation window, and a random split is more
			// optimistic than the time split.
			if p := r.Pooled; p.Metrics == nil || len(p.Hospitals) != 5 || p.Metrics.Count != v.Count {
				t.Fatalf("%s: pooled baseline %+v", r.Hospital, p)
			}
			if v.MAE >= r.Pooled.Metrics.MAE {
				t.Errorf("%s: per-hospital MAE %.0f is not below the pooled model's %.0f", r.Hospital, v.MAE, r.Pooled.Metrics.MAE)
			}
			if c := r.Comparison; c == nil || c.Split.Kind != train.RandomSplit || c.Metrics == nil || c.Metrics.MAE >= v.MAE {
				t.Errorf("%s: random split %+v: want its MAE below the time split's %.0f", r.Hospital, c, v.MAE)
			}
			if a.Metrics["random_split"].MAE != r.Comparison.Metrics.MAE {
				t.Errorf("%s: the artifact's random_split metrics %+v", r.Hospital, a.Metrics["random_split"])
			}

			// The split: the last three months, whole.
			sp := r.Split
			if sp.Kind != train.TimeSplit || sp.Cutoff != "2025-10-01" || sp.Validation != (models.Window{From: "2025-10-01", To: "2025-12-31"}) ||
				sp.Training.To != "2025-09-30" || sp.Training.From != "2024-01-01" || a.Lineage.Validation != sp.Validation || a.Lineage.Train != sp.Training {
				t.Errorf("%s: split %+v, lineage windows %+v %+v", r.Hospital, sp, a.Lineage.Train, a.Lineage.Validation)
			}
			if sp.TrainingCases != a.Training.Rows || sp.ValidationCases != a.Training.ValidationRows || v.Count != sp.ValidationCases {
				t.Errorf("%s: split counts %+v, artifact %+v, metrics %d", r.Hospital, sp, a.Training, v.Count)
			}

			// The cleaning: cancelled cases dropped, the bills capped, and
			// every case accounted for.
			removed := 0
			for _, c := range r.Cleaning {
				removed += c.Removed
			}
			if len(r.Cleaning) != 3 || r.Cleaning[0].Removed == 0 || r.Cleaning[2].Capped == 0 || r.Cleaning[2].Cap == nil || r.Rows-removed != r.Cleaned ||
				r.Cleaned != sp.TrainingCases+sp.ValidationCases {
				t.Errorf("%s: cleaning %+v: %d read, %d left, %d+%d split", r.Hospital, r.Cleaning, r.Rows, r.Cleaned, sp.TrainingCases, sp.ValidationCases)
			}
			capped := 0
			for _, p := range r.Points {
				if !p.Validation && p.Actual > *r.Cleaning[2].Cap {
					capped++
				}
			}
			if capped != r.Cleaning[2].Capped || len(r.Points) != r.Cleaned {
				t.Errorf("%s: %d training bills above the cap, %d capped; %d points", r.Hospital, capped, r.Cleaning[2].Capped, len(r.Points))
			}

			// Calibration to the contract's rate on the inner validation
			// (exactly there, near it on the outer window, which it never
			// saw), the gate without a model in production, the version
			// and lineage.
			in := r.Inner
			if want := math.Floor(0.2*float64(in.Count)) / float64(in.Count); in.Calibrated == nil || in.Calibrated.UnderRate != want {
				t.Errorf("%s: inner calibrated %+v, want an under-estimate rate of %v", r.Hospital, in.Calibrated, want)
			}
			if v.Calibrated == nil || math.Abs(v.Calibrated.UnderRate-0.2) > 0.05 {
				t.Errorf("%s: calibrated %+v, want an under-estimate rate near 0.2", r.Hospital, v.Calibrated)
			}
			if !r.Gate.Passed || r.Gate.Production != nil || r.Gate.New != v.MAE {
				t.Errorf("%s: gate %+v", r.Hospital, r.Gate)
			}
			if !version.MatchString(r.Version) || a.Version != r.Version {
				t.Errorf("%s: version %q", r.Hospital, r.Version)
			}
			// The files of every table the rows came from (a roster that a
			// later file re-sent counts as the later file's).
			has := func(prefix string) bool {
				return slices.ContainsFunc(a.Lineage.Files, func(f models.File) bool { return strings.HasPrefix(f.Name, prefix) })
			}
			if a.Lineage.Contract != h.Hash || !has("cases_2025-12.csv") || !has("patients_2024-01.csv") || !has("doctors_") || a.Lineage.Ward == "" {
				t.Errorf("%s: lineage of %d files, contract %s, ward %q", r.Hospital, len(a.Lineage.Files), a.Lineage.Contract, a.Lineage.Ward)
			}
			data, err := a.Encode()
			if err != nil {
				t.Fatal(err)
			}
			artifacts[engine][r.Hospital] = data
		}

		// The same data and contracts give the same bytes, and one
		// hospital alone (one CI job) gets the model and the pooled
		// baseline of a run over all.
		again, err := train.Run(ctx, s, hs, idsOf(hs), train.WithParallel(1))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range again {
			data, _ := r.Artifact.Encode()
			if !bytes.Equal(data, artifacts[engine][r.Hospital]) {
				t.Errorf("%s: a second run gives other bytes", r.Hospital)
			}
		}
		one, err := train.Run(ctx, s, hs, []string{"northgate"})
		if err != nil {
			t.Fatal(err)
		}
		data, _ := one[0].Artifact.Encode()
		if !bytes.Equal(data, artifacts[engine]["northgate"]) || !reflect.DeepEqual(one[0].Pooled, rs[2].Pooled) {
			t.Errorf("northgate alone: other bytes, or pooled %+v vs %+v", one[0].Pooled.Metrics, rs[2].Pooled.Metrics)
		}
	})
	if len(artifacts) == 2 {
		for id, data := range artifacts["sqlite"] {
			if !bytes.Equal(data, artifacts["postgres"][id]) {
				t.Errorf("%s: PostgreSQL and SQLite give different artifacts", id)
			}
		}
	}
}
