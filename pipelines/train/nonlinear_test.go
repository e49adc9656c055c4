package train_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/synth"
	"github.com/wardml/ward/pipelines/train"
	"github.com/wardml/ward/pipelines/train/traintest"
)

// On bills with steps and interactions (ward synth --shape nonlinear, whose
// contracts list every family), the trees beat ridge on the validation
// window, and the inner validation, which never saw it, ships trees.
func TestNonlinearShapeShipsTrees(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("trains a synthetic group in four families (-short, or the race detector)")
	}
	contracts := traintest.Group(t, synth.WithShape(synth.Nonlinear), synth.WithHospitals(2), synth.WithMonths(12))
	s := open(t, "sqlite:"+filepath.Join(t.TempDir(), "ward.db"))
	hs := traintest.Load(t, s, contracts)
	rs, err := train.Run(context.Background(), s, hs, idsOf(hs))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Hospital, r.Err)
		}
		mae := map[string]float64{}
		for _, c := range r.Candidates {
			if c.Validation == nil {
				t.Fatalf("%s: %s: %s", r.Hospital, c.Family, c.Error)
			}
			mae[c.Family] = c.Validation.MAE
		}
		t.Logf("%s: shipped %s; validation MAE %v", r.Hospital, r.Family, mae)
		if len(mae) != len(models.Families) || !strings.HasPrefix(r.Family, "gbdt") || mae[models.FamilyGBDT] > 0.9*mae[models.FamilyRidge] {
			t.Errorf("%s: shipped %s, validation MAE %v: want trees shipped and below 90%% of ridge's", r.Hospital, r.Family, mae)
		}
	}
}
