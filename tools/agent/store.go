package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/wardml/ward/tools/image"
)

// store is the agent's data folder:
//
//	current.json                 the record of the version serving
//	versions/<digest hex>/       an unpacked version: ward/serve, models/,
//	                             and unpacked.json (its files' SHA-256)
//	versions/.unpack-*           an unpack under way (renamed when complete)
type store struct {
	dir      string
	keep     int
	platform v1.Platform
	// maxModel bounds what a version unpacks under models/.
	maxModel int64
}

// version is an image unpacked on disk.
type version struct {
	Image    string `json:"image"`
	Digest   string `json:"digest"`
	Version  string `json:"version"`
	Platform string `json:"platform"`
	// Files maps each file's path in the folder to its SHA-256 (hex),
	// taken as it was unpacked.
	Files      map[string]string `json:"files"`
	UnpackedAt time.Time         `json:"unpacked_at"`

	dir string
}

// record is current.json: what serves, and since when.
type record struct {
	Hospital string    `json:"hospital"`
	Image    string    `json:"image"`
	Digest   string    `json:"digest"`
	Version  string    `json:"version"`
	Since    time.Time `json:"since"`
	// Commit is the manifest commit that asked for it.
	Commit string `json:"commit,omitempty"`
}

const (
	currentFile  = "current.json"
	versionsDir  = "versions"
	unpackedFile = "unpacked.json"
	unpackPrefix = ".unpack-"
)

// The files of an image the agent unpacks, by their path in the image
// without the leading slash (the path under a version's folder).
var (
	serverFile = strings.TrimPrefix(image.ServerPath, "/")
	modelFile  = strings.TrimPrefix(image.ModelPath, "/")
	modelsDir  = path.Dir(modelFile)
)

func openStore(dir string, keep int, platform v1.Platform, maxModel int64) (*store, error) {
	// Servers run with their version's folder as working directory, so
	// every path the agent hands them is absolute.
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("agent data folder: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, versionsDir), 0o755); err != nil {
		return nil, fmt.Errorf("agent data folder: %w", err)
	}
	// Unpacks that a stopped agent left half done.
	leftovers, _ := filepath.Glob(filepath.Join(dir, versionsDir, unpackPrefix+"*"))
	for _, l := range leftovers {
		os.RemoveAll(l)
	}
	return &store{dir: dir, keep: keep, platform: platform, maxModel: maxModel}, nil
}

func (s *store) versionDir(digest string) string {
	return filepath.Join(s.dir, versionsDir, strings.TrimPrefix(digest, "sha256:"))
}

// get returns the image ref unpacked for the store's platform: from disk
// when it is there intact, else pulled.
func (s *store) get(ctx context.Context, ref name.Digest, ver string, opts []remote.Option) (*version, error) {
	if v, err := s.intact(ref.DigestStr()); err == nil {
		return v, nil
	}
	return s.pull(ctx, ref, ver, opts)
}

// intact reads the unpacked version of digest and checks that its files
// are those it unpacked.
func (s *store) intact(digest string) (*version, error) {
	dir := s.versionDir(digest)
	data, err := os.ReadFile(filepath.Join(dir, unpackedFile))
	if err != nil {
		return nil, err
	}
	var v version
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, unpackedFile), err)
	}
	if v.Digest != digest || v.Files[serverFile] == "" || v.Files[modelFile] == "" {
		return nil, fmt.Errorf("%s: not the record of %s", filepath.Join(dir, unpackedFile), digest)
	}
	for _, f := range slices.Sorted(maps.Keys(v.Files)) {
		if !filepath.IsLocal(f) {
			return nil, fmt.Errorf("%s: file %q is not in its folder", filepath.Join(dir, unpackedFile), f)
		}
		sum, err := fileSHA256(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		if sum != v.Files[f] {
			return nil, fmt.Errorf("%s changed since it was unpacked (SHA-256 %s, was %s)", filepath.Join(dir, f), sum, v.Files[f])
		}
	}
	v.dir = dir
	return &v, nil
}

func fileSHA256(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// pull fetches the image ref by digest, picks the store's platform, and
// unpacks its server and model into a new folder, renamed into place when
// complete (image.Pull and image.Unpack: every manifest and blob is
// checked against its digest, and the server and the model against their
// bounds).
func (s *store) pull(ctx context.Context, ref name.Digest, ver string, opts []remote.Option) (*version, error) {
	img, err := image.Pull(ctx, ref, &s.platform, opts...)
	if err != nil {
		return nil, &stepError{step: StepPull, err: err}
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.dir, versionsDir), unpackPrefix)
	if err != nil {
		return nil, &stepError{step: StepUnpack, err: err}
	}
	defer os.RemoveAll(tmp)
	files, err := image.Unpack(img, tmp, image.MaxModelBytes(s.maxModel))
	if errors.Is(err, image.ErrUnpack) {
		return nil, &stepError{step: StepUnpack, err: fmt.Errorf("pull %s: %w", ref, err)}
	}
	if err != nil {
		return nil, &stepError{step: StepPull, err: fmt.Errorf("pull %s: %w", ref, err)}
	}
	v := &version{Image: ref.String(), Digest: ref.DigestStr(), Version: ver, Platform: s.platform.String(), Files: files, UnpackedAt: time.Now().UTC()}
	if err := saveJSON(filepath.Join(tmp, unpackedFile), v); err != nil {
		return nil, &stepError{step: StepUnpack, err: err}
	}
	v.dir = s.versionDir(v.Digest)
	// A folder of this digest that is not intact is replaced.
	if err := os.RemoveAll(v.dir); err != nil {
		return nil, &stepError{step: StepUnpack, err: err}
	}
	if err := os.Rename(tmp, v.dir); err != nil {
		return nil, &stepError{step: StepUnpack, err: err}
	}
	return v, nil
}

// readCurrent reads current.json; nil when there is none.
func (s *store) readCurrent() (*record, error) {
	file := filepath.Join(s.dir, currentFile)
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if !digestHex(strings.TrimPrefix(r.Digest, "sha256:")) || !strings.HasPrefix(r.Digest, "sha256:") {
		return nil, fmt.Errorf("%s: digest %q: want sha256: and 64 hex digits", file, r.Digest)
	}
	return &r, nil
}

// writeCurrent replaces current.json, and marks the version folder as the
// latest used.
func (s *store) writeCurrent(r *record) error {
	if err := saveJSON(filepath.Join(s.dir, currentFile), r); err != nil {
		return err
	}
	now := time.Now()
	return os.Chtimes(s.versionDir(r.Digest), now, now)
}

// saveJSON writes v as JSON into file: a temporary file beside it,
// synced, then renamed, so that the file is never half written.
func saveJSON(file string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".tmp-"+filepath.Base(file))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// prune removes the unpacked versions beyond the s.keep used last, never
// those in keep.
func (s *store) prune(keep []string) error {
	entries, err := os.ReadDir(filepath.Join(s.dir, versionsDir))
	if err != nil {
		return err
	}
	type dir struct {
		name string
		used time.Time
	}
	var dirs []dir
	for _, e := range entries {
		if !e.IsDir() || !digestHex(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		dirs = append(dirs, dir{e.Name(), info.ModTime()})
	}
	slices.SortFunc(dirs, func(a, b dir) int { return b.used.Compare(a.used) })
	kept := 0
	var errs []error
	for _, d := range dirs {
		if slices.Contains(keep, "sha256:"+d.name) || kept < s.keep {
			kept++
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.dir, versionsDir, d.name)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func digestHex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
