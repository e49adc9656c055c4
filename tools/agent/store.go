package agent

import (
	"archive/tar"
	"compress/gzip"
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
	"github.com/google/go-containerregistry/pkg/v1/types"

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
	// maxUnpacked bounds what one image may write to disk: ward's are a
	// binary and a model, tens of MiB.
	maxUnpacked = 4 << 30
)

// The files of an image the agent unpacks, by their path in the image
// without the leading slash (the path under a version's folder).
var (
	serverFile = strings.TrimPrefix(image.ServerPath, "/")
	modelFile  = strings.TrimPrefix(image.ModelPath, "/")
	modelsDir  = path.Dir(modelFile)
)

func openStore(dir string, keep int, platform v1.Platform) (*store, error) {
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
	return &store{dir: dir, keep: keep, platform: platform}, nil
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
// complete. Every manifest and blob is checked against its digest.
func (s *store) pull(ctx context.Context, ref name.Digest, ver string, opts []remote.Option) (*version, error) {
	img, err := s.platformImage(ref, append(slices.Clone(opts), remote.WithContext(ctx)))
	if err != nil {
		return nil, &stepError{step: StepPull, err: err}
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, &stepError{step: StepPull, err: fmt.Errorf("pull %s: %w", ref, err)}
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.dir, versionsDir), unpackPrefix)
	if err != nil {
		return nil, &stepError{step: StepUnpack, err: err}
	}
	defer os.RemoveAll(tmp)
	u := &unpacker{dir: tmp, files: map[string]string{}}
	for _, l := range layers {
		if err := u.layer(l); err != nil {
			return nil, err
		}
	}
	for _, f := range []string{serverFile, modelFile} {
		if u.files[f] == "" {
			return nil, &stepError{step: StepUnpack, err: fmt.Errorf("pull %s: the image has no /%s: not an image of ward package", ref, f)}
		}
	}
	v := &version{Image: ref.String(), Digest: ref.DigestStr(), Version: ver, Platform: s.platform.String(), Files: u.files, UnpackedAt: time.Now().UTC()}
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

// platformImage returns the image of the store's platform that ref points
// at: an index's entry for it, or a single image built for it.
func (s *store) platformImage(ref name.Digest, opts []remote.Option) (v1.Image, error) {
	// remote checks that each manifest it fetches by digest hashes to it.
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("pull %s: %w", ref, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("pull %s: %w", ref, err)
		}
		var have []string
		for _, m := range im.Manifests {
			if m.Platform == nil {
				continue
			}
			if m.Platform.OS == s.platform.OS && m.Platform.Architecture == s.platform.Architecture {
				img, err := idx.Image(m.Digest)
				if err != nil {
					return nil, fmt.Errorf("pull %s (%s): %w", ref, m.Platform, err)
				}
				return img, nil
			}
			have = append(have, m.Platform.String())
		}
		return nil, fmt.Errorf("pull %s: no image for this host's platform %s (it has %s)", ref, s.platform, strings.Join(have, ", "))
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return nil, fmt.Errorf("pull %s: %w", ref, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("pull %s: config: %w", ref, err)
		}
		if cf.OS != s.platform.OS || cf.Architecture != s.platform.Architecture {
			return nil, fmt.Errorf("pull %s: an image for %s/%s, not this host's %s", ref, cf.OS, cf.Architecture, s.platform)
		}
		return img, nil
	}
	return nil, fmt.Errorf("pull %s: %s is not an image or an index", ref, desc.MediaType)
}

// unpacker extracts the server and the model from an image's layers into
// a folder, and nothing that could reach outside it.
type unpacker struct {
	dir   string
	files map[string]string
	total int64
}

// layer unpacks one layer. Its compressed bytes are hashed as they are
// read, and all of them are read: a layer that does not hash to its
// digest is refused whatever its content.
func (u *unpacker) layer(l v1.Layer) error {
	want, err := l.Digest()
	if err != nil {
		return &stepError{step: StepPull, err: err}
	}
	mt, err := l.MediaType()
	if err != nil {
		return &stepError{step: StepPull, err: fmt.Errorf("layer %s: %w", want, err)}
	}
	if mt != types.OCILayer && mt != types.DockerLayer {
		return &stepError{step: StepUnpack, err: fmt.Errorf("layer %s: media type %s: want a gzipped tar (%s)", want, mt, types.OCILayer)}
	}
	rc, err := l.Compressed()
	if err != nil {
		return &stepError{step: StepPull, err: fmt.Errorf("layer %s: %w", want, err)}
	}
	defer rc.Close()
	h := sha256.New()
	r := io.TeeReader(rc, h)
	uerr := u.untar(r)
	_, rerr := io.Copy(io.Discard, r)
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != want.String() {
		return &stepError{step: StepPull, err: fmt.Errorf("layer %s: the registry served bytes that hash to %s: refused", want, got)}
	}
	if rerr != nil {
		return &stepError{step: StepPull, err: fmt.Errorf("layer %s: %w", want, rerr)}
	}
	if uerr != nil {
		return &stepError{step: StepUnpack, err: fmt.Errorf("layer %s: %w", want, uerr)}
	}
	return nil
}

// untar extracts a gzipped tar: the server (ward/serve) and the files
// under models/; other regular files and folders are passed over. An
// entry that names a path outside the folder (absolute, or with ..) or is
// a link or a device is refused, so that an image cannot write where it
// should not.
func (u *unpacker) untar(r io.Reader) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return zr.Close()
		}
		if err != nil {
			return err
		}
		name, err := entryName(hdr)
		if err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeReg:
		default:
			return fmt.Errorf("entry %q: a %s: ward's images hold regular files only", hdr.Name, entryKind(hdr.Typeflag))
		}
		if name != serverFile && !strings.HasPrefix(name, modelsDir+"/") {
			continue
		}
		if u.total += hdr.Size; u.total > maxUnpacked {
			return fmt.Errorf("entry %q: more than %d bytes unpacked", hdr.Name, int64(maxUnpacked))
		}
		mode := fs.FileMode(0o644)
		if name == serverFile {
			mode = 0o755
		}
		sum, err := writeFile(filepath.Join(u.dir, filepath.FromSlash(name)), tr, mode)
		if err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		u.files[name] = sum
	}
}

// entryName is a tar entry's path within the folder, or an error when it
// would leave it.
func entryName(hdr *tar.Header) (string, error) {
	if strings.HasPrefix(hdr.Name, "/") {
		return "", fmt.Errorf("entry %q: an absolute path", hdr.Name)
	}
	name := path.Clean(hdr.Name)
	if !filepath.IsLocal(name) {
		return "", fmt.Errorf("entry %q: a path outside the image's folder", hdr.Name)
	}
	return name, nil
}

func entryKind(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeFifo:
		return "FIFO"
	}
	return fmt.Sprintf("entry of type %q", t)
}

// writeFile writes r to a new file and returns its SHA-256.
func writeFile(file string, r io.Reader, mode fs.FileMode) (string, error) {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return "", err
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), r); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), os.Chmod(file, mode)
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
