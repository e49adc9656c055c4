package synth

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
)

// monthOf finds the month in the name of a file Generate writes
// (cases_2025-11.csv.gpg, cases_2025-11_correction.csv.age, ...).
var monthOf = regexp.MustCompile(`_(\d{4}-\d{2})[._]`)

// Upload copies the files of the months that keep selects from a drop box
// that Generate wrote (Summary.SFTP) to another, folders and all, as the
// hospitals upload them month by month; it returns how many it copied.
// The demo and the tests hold months back this way, to let them arrive
// later.
func Upload(from, to string, keep func(month string) bool) (int, error) {
	n := 0
	err := filepath.WalkDir(from, func(path string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		m := monthOf.FindStringSubmatch(e.Name())
		if m == nil {
			return fmt.Errorf("%s: no month in the name: not a file of ward synth", path)
		}
		if !keep(m[1]) {
			return nil
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		n++
		return os.WriteFile(dst, data, 0o644)
	})
	return n, err
}
