package train_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/pipelines/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// engines runs a test against a fresh database of each engine: a database
// on a real PostgreSQL server, and a SQLite file.
func engines(t *testing.T, test func(t *testing.T, engine, url string)) {
	t.Run("postgres", func(t *testing.T) { test(t, "postgres", testenv.Postgres(t)) })
	t.Run("sqlite", func(t *testing.T) { test(t, "sqlite", "sqlite:"+filepath.Join(t.TempDir(), "ward.db")) })
}

func open(t *testing.T, url string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func idsOf(hs []*contract.Hospital) []string {
	ids := make([]string, len(hs))
	for i, h := range hs {
		ids[i] = h.ID
	}
	return ids
}

func byID(hs []*contract.Hospital, id string) *contract.Hospital {
	for _, h := range hs {
		if h.ID == id {
			return h
		}
	}
	return nil
}
