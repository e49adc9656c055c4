package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// layerOf is a gzipped tar of the entries given.
func layerOf(t *testing.T, entries ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range entries {
		body := []byte("content of " + h.Name)
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(body)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}

func reg(name string, mode int64) tar.Header {
	return tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}
}

// Unpacking takes the server and the model, and refuses any entry that
// could write outside its folder.
func TestUnpackRefusesEntriesThatEscape(t *testing.T) {
	dir := t.TempDir()
	u := &unpacker{dir: dir, files: map[string]string{}}
	good := layerOf(t, tar.Header{Typeflag: tar.TypeDir, Name: "ward/", Mode: 0o755}, reg("ward/serve", 0o700),
		reg("./models/model.json", 0o600), reg("models/MODEL_CARD.md", 0o644), reg("etc/passwd", 0o644))
	if err := u.untar(bytes.NewReader(good)); err != nil {
		t.Fatal(err)
	}
	if len(u.files) != 3 || u.files["ward/serve"] == "" || u.files["models/model.json"] == "" || u.files["models/MODEL_CARD.md"] == "" {
		t.Fatalf("unpacked %v", u.files)
	}
	if st, err := os.Stat(filepath.Join(dir, "ward", "serve")); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("ward/serve: %v, %v", st, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "models", "model.json")); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("models/model.json: %v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etc")); err == nil {
		t.Fatal("a file that is neither the server nor the model was unpacked")
	}
	sum, _ := fileSHA256(filepath.Join(dir, "models", "model.json"))
	if sum != u.files["models/model.json"] {
		t.Fatalf("recorded SHA-256 %s, the file's %s", u.files["models/model.json"], sum)
	}

	outside := filepath.Join(filepath.Dir(dir), "escaped")
	for _, c := range []struct {
		name  string
		entry tar.Header
		want  string
	}{
		{"absolute", reg("/models/model.json", 0o644), "an absolute path"},
		{"dot dot", reg("models/../../escaped", 0o644), "a path outside the image's folder"},
		{"dot dot first", reg("../escaped", 0o644), "a path outside"},
		{"symlink", tar.Header{Typeflag: tar.TypeSymlink, Name: "models/model.json", Linkname: outside}, "a symbolic link"},
		{"hard link", tar.Header{Typeflag: tar.TypeLink, Name: "ward/serve", Linkname: "/bin/sh"}, "a hard link"},
		{"device", tar.Header{Typeflag: tar.TypeChar, Name: "models/tty", Devmajor: 5}, "a device"},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := &unpacker{dir: t.TempDir(), files: map[string]string{}}
			err := u.untar(bytes.NewReader(layerOf(t, c.entry)))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if _, err := os.Lstat(outside); err == nil {
				t.Fatal("an entry was written outside the folder")
			}
		})
	}
	if err := (&unpacker{dir: t.TempDir(), files: map[string]string{}}).untar(strings.NewReader("not gzip")); err == nil {
		t.Fatal("a layer that is not gzip unpacked")
	}
}

// A version on disk counts only while its files are those unpacked, and
// pruning keeps the versions used last and the ones asked for.
func TestStoreKeepsIntactVersions(t *testing.T) {
	s, err := openStore(t.TempDir(), 2, v1.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	digests := make([]string, 4)
	for i := range digests {
		digests[i] = "sha256:" + strings.Repeat(string(rune('a'+i)), 64)
		dir := s.versionDir(digests[i])
		u := &unpacker{dir: dir, files: map[string]string{}}
		if err := u.untar(bytes.NewReader(layerOf(t, reg("ward/serve", 0o755), reg("models/model.json", 0o644)))); err != nil {
			t.Fatal(err)
		}
		v := version{Digest: digests[i], Files: u.files}
		if err := saveJSON(filepath.Join(dir, unpackedFile), v); err != nil {
			t.Fatal(err)
		}
		when := time.Now().Add(time.Duration(i-10) * time.Minute)
		os.Chtimes(dir, when, when)
	}
	if _, err := s.intact(digests[0]); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(s.versionDir(digests[0]), "ward", "serve"), []byte("other"), 0o755)
	if _, err := s.intact(digests[0]); err == nil || !strings.Contains(err.Error(), "changed since it was unpacked") {
		t.Fatalf("a changed server: %v", err)
	}
	if _, err := s.intact(digests[3][:20]); err == nil {
		t.Fatal("a version never unpacked is intact")
	}

	if err := s.prune([]string{digests[0]}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false, true, true} {
		if _, err := os.Stat(s.versionDir(digests[i])); (err == nil) != want {
			t.Errorf("version %d kept: %v, want %v", i, err == nil, want)
		}
	}
	if err := s.writeCurrent(&record{Hospital: "st-olaf", Digest: digests[2], Version: "v3"}); err != nil {
		t.Fatal(err)
	}
	if r, err := s.readCurrent(); err != nil || r.Digest != digests[2] {
		t.Fatalf("current: %+v, %v", r, err)
	}
	os.WriteFile(filepath.Join(s.dir, currentFile), []byte(`{"digest": "sha256:../../etc"}`), 0o644)
	if _, err := s.readCurrent(); err == nil {
		t.Fatal("a record with a bad digest read")
	}
}

// Two servers writing at once never mix their lines.
func TestLinesKeepLinesWhole(t *testing.T) {
	var out bytes.Buffer
	l := &lines{w: &out}
	a, b := l.writer(), l.writer()
	a.Write([]byte(`{"from":"a",`))
	b.Write([]byte(`{"from":"b","n":1}` + "\n" + `{"from":"b",`))
	a.Write([]byte(`"n":1}` + "\n"))
	b.Write([]byte(`"n":2}`))
	b.flush()
	want := `{"from":"b","n":1}` + "\n" + `{"from":"a","n":1}` + "\n" + `{"from":"b","n":2}`
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestTailSaysWhyTheServerStopped(t *testing.T) {
	var tl tail
	tl.Write([]byte(`{"log.level":"info","message":"starting"}` + "\n" + `{"log.level":"error","message":"bad settings","error.message":"model m.json: not a model"}` + "\n" + "exit"))
	if got := tl.summary(); got != ": model m.json: not a model" {
		t.Fatalf("summary %q", got)
	}
	var plain tail
	plain.Write([]byte("panic: boom\n"))
	if got := plain.summary(); got != ": panic: boom" {
		t.Fatalf("summary %q", got)
	}
}
