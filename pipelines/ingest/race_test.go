//go:build race

package ingest_test

// raceEnabled: the race detector slows the pure-Go SQLite tenfold; the
// largest test runs without it (tools/dev/test runs both ways).
const raceEnabled = true
