// Package exit defines ward's exit codes, so that every stage can say how a
// failure should end the command and CI can act on the code. The table is
// documented in README.md.
package exit

import "errors"

// The exit codes of every ward command.
const (
	OK = 0
	// Failure: the command ran and something failed (for ingest with
	// --strict, a file was quarantined).
	Failure = 1
	// Config: bad usage, bad configuration, or a service that cannot be
	// reached. Nothing was changed.
	Config = 2
	// GateFailed: a new model is worse than the one in production.
	GateFailed = 3
	// Unhealthy: feedback found a degraded or drifted model.
	Unhealthy = 4
)

// Error carries an exit code with the error that causes it.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// With wraps err so that the command exits with code. A nil err stays nil.
func With(code int, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err}
}

// Code returns the exit code for err: 0 for nil, the code of the outermost
// *Error in its chain, else Failure.
func Code(err error) int {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Failure
}
