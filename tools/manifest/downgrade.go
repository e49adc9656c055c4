package manifest

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/wardml/ward/models"
)

// ErrDowngrade: the change would move a hospital to an older model than
// the one it runs, and is neither a rollback nor an explicit downgrade.
var ErrDowngrade = fmt.Errorf("downgrade refused")

// Window is the span of data (dates, YYYY-MM-DD) a model was trained and
// validated on, from its artifact's lineage; zero when it is unknown (a
// random split).
type Window struct {
	From string `yaml:"from" json:"from"`
	To   string `yaml:"to" json:"to"`
}

func (w Window) String() string {
	if w.To == "" {
		return "no data window"
	}
	return "data " + w.From + ".." + w.To
}

// ModelWindow reads the data window of a model artifact (models.Artifact's
// lineage): from the first training date to the last validation date.
func ModelWindow(artifact []byte) (Window, error) {
	var a struct {
		Lineage models.Lineage `json:"lineage"`
	}
	if err := json.Unmarshal(artifact, &a); err != nil {
		return Window{}, fmt.Errorf("model artifact: %w", err)
	}
	w := Window{From: a.Lineage.Train.From, To: a.Lineage.Validation.To}
	if w.From == "" {
		w.From = a.Lineage.Validation.From
	}
	if w.To == "" || a.Lineage.Train.To > w.To {
		w.To = a.Lineage.Train.To
	}
	return w, nil
}

// CompareModels orders two models of a hospital, -1 when a is older than
// b: by the end of their data windows when both are known and differ, else
// by their versions' leading part (before the first "-"; ward's versions
// are YYYY.MM-<content hash>), digit runs compared as numbers. Models that
// neither tells apart compare 0: not a downgrade.
func CompareModels(aVersion string, aWindow Window, bVersion string, bWindow Window) int {
	if aWindow.To != "" && bWindow.To != "" && aWindow.To != bWindow.To {
		return strings.Compare(aWindow.To, bWindow.To)
	}
	av, _, _ := strings.Cut(aVersion, "-")
	bv, _, _ := strings.Cut(bVersion, "-")
	return naturalCompare(av, bv)
}

// naturalCompare compares strings with their digit runs as numbers, so
// that v2 < v10 and 2026.9 < 2026.10.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := len(na) - len(nb); c != 0 {
				return sign(c)
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return sign(int(a[0]) - int(b[0]))
		}
		a, b = a[1:], b[1:]
	}
	return sign(len(a) - len(b))
}

func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// Model names a model in a message: its version, digest and data window.
type Model struct {
	Version, Digest string
	Window          Window
}

func (m Model) String() string {
	s := m.Version + " (" + m.Digest
	if m.Window.To != "" {
		s += ", " + m.Window.String()
	}
	return s + ")"
}

// DowngradeError is the refusal to move from the model that runs to an
// older one; where says who refuses.
func DowngradeError(hospital string, from, to Model, where string) error {
	return fail(ErrDowngrade, "%s: %s is older than %s, which %s runs: %s", where, to, from, hospital, downgradeHelp)
}

const downgradeHelp = "a hospital moves to an older model only by a rollback (ward rollback, or a signed git revert of the deploy) or by a deploy that says so (ward deploy --allow-downgrade, which signs a " + TrailerAllowDowngrade + " trailer)"
