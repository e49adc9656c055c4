// Package traintest fills a store with a synthetic hospital group for the
// tests and the benchmark of the training stage and of `ward train`: it writes the group with
// pipelines/synth (plaintext, `ward synth --encrypt none`) and loads every
// extract the way ingest does, through ingest's own parser
// (pipelines/ingest/extract) and the store's Load, in file name order. It is
// a fixture loader for tests, not a second ingest: no SFTP, no staging, no
// decryption, no reports.
package traintest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/pipelines/ingest/extract"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/pipelines/synth"
)

// Group writes a plaintext synthetic group into a temporary folder (the
// options go after WithEncryption("none"), so they may override all but
// that) and returns the folder of its contracts.
func Group(t testing.TB, opts ...synth.Option) string {
	t.Helper()
	dir := t.TempDir()
	sum, err := synth.Generate(context.Background(), dir, append([]synth.Option{synth.WithEncryption("none")}, opts...)...)
	if err != nil {
		t.Fatalf("synth: %v", err)
	}
	return sum.Contracts
}

// Load loads every extract of the hospitals found under contracts into s
// (LoadGroup), and fails the test on an error.
func Load(t testing.TB, s *store.Store, contracts string) []*contract.Hospital {
	t.Helper()
	hs, err := LoadGroup(s, contracts)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// LoadGroup loads every extract of the hospitals found under contracts
// into s: the files in DIR/../sftp/<inbound folder>/, in name order (a
// month's file before its correction). A file that ingest would
// quarantine is an error; rejected rows are left out, as ingest leaves
// them.
func LoadGroup(s *store.Store, contracts string) ([]*contract.Hospital, error) {
	hs, err := contract.LoadAll(contracts)
	if err != nil {
		return nil, err
	}
	for _, h := range hs {
		dir := filepath.Join(filepath.Dir(contracts), "sftp", filepath.FromSlash(h.Inbound.Folder))
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			if h.TableFor(e.Name()) != nil {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		for _, name := range names {
			if err := LoadFile(s, h, filepath.Join(dir, name)); err != nil {
				return nil, err
			}
		}
	}
	return hs, nil
}

// LoadFile loads one plaintext extract of hospital h into s.
func LoadFile(s *store.Store, h *contract.Hospital, file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	name := filepath.Base(file)
	tbl := h.TableFor(name)
	if tbl == nil {
		return fmt.Errorf("%s: no table of %s's contract matches it", name, h.ID)
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	x := extract.New(f, h, tbl, name)
	rec := store.File{Hospital: h.ID, Name: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data)), Table: tbl.Name}
	_, err = s.Load(context.Background(), rec, tbl, x.Rows())
	if errors.Is(err, store.ErrAlreadyLoaded) {
		// A roster that did not change since last month: ingest records
		// the copy as a duplicate and loads nothing.
		rec.State, rec.Reason = store.Duplicate, err.Error()
		return s.Record(context.Background(), rec)
	}
	return err
}
