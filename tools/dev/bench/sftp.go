package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/pipelines/ingest/fetch"
	"github.com/wardml/ward/pipelines/ingest/staging"
)

// sftpFlags has its defaults here, so that bench ingest, which runs this
// benchmark after its own, gets them too.
var sftpFlags = struct {
	size int
	runs int
}{size: 200, runs: 3}

func init() {
	register(&benchmark{
		Name:    "sftp",
		Summary: "download a 200 MB file from a real sshd: ward's fetch vs OpenSSH's sftp client",
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&sftpFlags.size, "size", sftpFlags.size, "file size in MB")
			fs.IntVar(&sftpFlags.runs, "runs", sftpFlags.runs, "downloads per client (the best counts)")
		},
		Run: benchSFTP,
	})
}

// benchSFTP downloads one file from an OpenSSH sshd started as the tests
// start it (testenv.StartSSHD, run inside testing.Benchmark for its
// *testing.B), alternately with ward's fetch (into staging: hashed,
// fsynced, renamed, as ingest does) and with `sftp -b`, and prints the best
// time of each and their ratio. The target is a ratio of at least 1.0.
func benchSFTP(ctx context.Context) error {
	for _, p := range []string{"sftp"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%s not found: install the Debian package openssh-client", p)
		}
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		if _, err := exec.LookPath("sshd"); err != nil {
			return errors.New("sshd not found: install the Debian package openssh-server")
		}
	}
	testing.Init()
	flag.CommandLine.Set("test.benchtime", "1x")
	var err error
	done := false
	testing.Benchmark(func(b *testing.B) {
		err = runSFTP(ctx, testenv.StartSSHD(b))
		done = true
	})
	if !done {
		return errors.New("sshd did not start")
	}
	return err
}

func runSFTP(ctx context.Context, s *testenv.SSHD) error {
	size := int64(sftpFlags.size) << 20
	h, err := contract.Parse([]byte(`
id: bench
inbound: {folder: bench/inbound, encryption: age, ready: marker}
tables:
  - name: cases
    pattern: "cases_*"
    key: [id]
    columns: [{name: id, type: string, required: true}, {name: x, type: float}]
training: {table: cases, target: x, features: [{name: id, kind: categorical}]}
`), "bench.yaml")
	if err != nil {
		return err
	}
	inbound := filepath.Join(s.Root, "bench", "inbound")
	if err := os.MkdirAll(inbound, 0o755); err != nil {
		return err
	}
	name := "cases_2026-11.csv.age"
	remote := filepath.Join(inbound, name)
	if err := writeRandom(remote, size); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "ward-bench-sftp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	batch := filepath.Join(work, "batch")
	local := filepath.Join(work, "sftp-copy")
	if err := os.WriteFile(batch, []byte(fmt.Sprintf("get %s %s\n", remote, local)), 0o600); err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(s.Addr)
	var cleanup []string // ward's staging folders
	// Each client's run is timed from the connection to a durable (ward)
	// or complete (sftp) copy; removing the copy comes after, untimed.
	openssh := func(extra ...string) func() error {
		return func() error {
			args := append([]string{"-q", "-b", batch, "-i", s.ClientKey, "-P", port,
				"-o", "UserKnownHostsFile=" + s.KnownHosts, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"}, extra...)
			out, err := exec.CommandContext(ctx, "sftp", append(args, s.User+"@"+host)...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("sftp: %w\n%s", err, out)
			}
			fi, err := os.Stat(local)
			if err == nil && fi.Size() != size {
				err = fmt.Errorf("sftp copied %d bytes, want %d", fi.Size(), size)
			}
			return err
		}
	}
	ward := func() error {
		st, err := staging.Open(filepath.Join(work, fmt.Sprint("staging-", time.Now().UnixNano())))
		if err != nil {
			return err
		}
		cleanup = append(cleanup, st.Dir())
		src, err := fetch.Dial(ctx, fetch.SFTPConfig{URL: s.URL(s.Root), Key: s.ClientKey, KnownHosts: s.KnownHosts})
		if err != nil {
			return err
		}
		defer src.Close()
		files := []fetch.File{{Entry: fetch.Entry{Name: name, Size: size}, Table: "cases"}}
		out := fetch.Fetch(ctx, src, st, h, files)
		return out[0].Err
	}
	clients := []struct {
		name  string
		run   func() error
		times []time.Duration
	}{
		{name: "ward fetch (pkg/sftp, into staging: sha256 + fsync)", run: ward},
		{name: "OpenSSH sftp -b (default cipher)", run: openssh()},
		{name: "OpenSSH sftp -b -c aes128-gcm@openssh.com", run: openssh("-c", "aes128-gcm@openssh.com")},
	}
	for range sftpFlags.runs {
		for i := range clients {
			start := time.Now()
			if err := clients[i].run(); err != nil {
				return fmt.Errorf("%s: %w", clients[i].name, err)
			}
			clients[i].times = append(clients[i].times, time.Since(start))
			os.Remove(local)
			for _, c := range cleanup {
				os.RemoveAll(c)
			}
			cleanup = nil
		}
	}
	mb := float64(size) / 1e6
	fmt.Printf("download of %d MB from OpenSSH sshd on loopback, best of %d:\n", sftpFlags.size, sftpFlags.runs)
	best := make([]time.Duration, len(clients))
	for i, c := range clients {
		best[i] = slices.Min(c.times)
		fmt.Printf("  %-55s %8.2fs %8.1f MB/s\n", c.name, best[i].Seconds(), mb/best[i].Seconds())
	}
	fmt.Printf("ratio ward / sftp (default cipher): %.2fx (target >= 1.0)\n", best[1].Seconds()/best[0].Seconds())
	fmt.Printf("ratio ward / sftp (same cipher as ward, aes128-gcm): %.2fx\n", best[2].Seconds()/best[0].Seconds())
	return nil
}

func writeRandom(file string, size int64) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	// Random bytes, as ciphertext is: nothing for any compression to gain.
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.WriteFile(file+".done", nil, 0o644)
}
