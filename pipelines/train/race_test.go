//go:build race

package train_test

// raceEnabled is set under the race detector: the smaller tests run the
// same concurrent code (hospitals and pools read and fitted side by side)
// in a fraction of the time.
const raceEnabled = true
