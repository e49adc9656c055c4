package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"github.com/wardml/ward/tools/manifest"
)

// appliedFile records the manifest commit the agent applied last, so that
// a restarted agent still refuses a history that drops it.
const appliedFile = "applied.json"

var commitPattern = regexp.MustCompile(`^[0-9a-f]{40}$`)

type appliedRecord struct {
	Commit string `json:"commit"`
}

// readApplied reads the commit applied last ("" when none is recorded).
func readApplied(dir string) (string, error) {
	file := filepath.Join(dir, appliedFile)
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("agent data folder: %w", err)
	}
	var r appliedRecord
	if err := json.Unmarshal(data, &r); err != nil || !commitPattern.MatchString(r.Commit) {
		return "", fmt.Errorf("%s: want {\"commit\": \"<40 hex digits>\"}: the record of the manifest commit applied last is damaged; remove it only if you trust the manifest's history as it is now", file)
	}
	return r.Commit, nil
}

func writeApplied(dir, commit string) error {
	return saveJSON(filepath.Join(dir, appliedFile), appliedRecord{Commit: commit})
}

// checkDowngrade refuses to move from the model serving to v when v's is
// older (manifest.CompareModels: data window, then version), unless the
// commit that pins v is a rollback: a revert, or a deploy with a
// Ward-Allow-Downgrade trailer.
func (a *Agent) checkDowngrade(v *version, p *manifest.Provenance) error {
	cur := a.current.Load()
	if cur == nil {
		return nil
	}
	from, err := modelWindow(cur.version)
	if err != nil {
		return err
	}
	to, err := modelWindow(v)
	if err != nil {
		return err
	}
	if manifest.CompareModels(v.Version, to, cur.version.Version, from) >= 0 {
		return nil
	}
	if p != nil && p.Decider.Rollback() {
		a.log.Info("moving to an older model: the commit that pins it is a rollback", "event.action", "agent.downgrade", "ward.commit", p.Decider.Commit,
			"ward.model.version", v.Version, "ward.model.previous_version", cur.version.Version)
		return nil
	}
	where := "the agent refuses it"
	if p != nil && p.Decider != nil {
		where = fmt.Sprintf("commit %s (%q) is neither a revert nor a deploy with a %s trailer", short(p.Decider.Commit), p.Decider.Subject, manifest.TrailerAllowDowngrade)
	}
	return manifest.DowngradeError(a.hospital, manifest.Model{Version: cur.version.Version, Digest: cur.version.Digest, Window: from},
		manifest.Model{Version: v.Version, Digest: v.Digest, Window: to}, where)
}

// modelWindow is the data window of an unpacked version's model.
func modelWindow(v *version) (manifest.Window, error) {
	data, err := os.ReadFile(filepath.Join(v.dir, filepath.FromSlash(modelFile)))
	if err != nil {
		return manifest.Window{}, err
	}
	w, err := manifest.ModelWindow(data)
	if err != nil {
		return manifest.Window{}, fmt.Errorf("%s (%s): %w", v.Image, v.Version, err)
	}
	return w, nil
}
