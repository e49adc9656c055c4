package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// A version on disk counts only while its files are those unpacked, and
// pruning keeps the versions used last and the ones asked for.
func TestStoreKeepsIntactVersions(t *testing.T) {
	s, err := openStore(t.TempDir(), 2, v1.Platform{OS: "linux", Architecture: "amd64"}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	digests := make([]string, 4)
	for i := range digests {
		digests[i] = "sha256:" + strings.Repeat(string(rune('a'+i)), 64)
		dir := s.versionDir(digests[i])
		files := map[string]string{}
		for _, f := range []string{"ward/serve", "models/model.json"} {
			file := filepath.Join(dir, filepath.FromSlash(f))
			os.MkdirAll(filepath.Dir(file), 0o755)
			if err := os.WriteFile(file, []byte("content of "+f), 0o644); err != nil {
				t.Fatal(err)
			}
			files[f], _ = fileSHA256(file)
		}
		v := version{Digest: digests[i], Files: files}
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
