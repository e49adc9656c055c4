//go:build race

package serving_test

// raceEnabled: the race detector slows the server down about tenfold.
const raceEnabled = true
