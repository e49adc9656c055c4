package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"time"
)

// Holder says who holds a hospital's lock.
type Holder struct {
	// What the holder does, e.g. "ingest".
	What  string    `json:"what"`
	PID   int       `json:"pid"`
	Host  string    `json:"host"`
	Since time.Time `json:"since"`
}

// LockedError says that a hospital's lock stayed taken until the wait
// ended.
type LockedError struct {
	Hospital string
	// Holder is nil when the holder could not be read.
	Holder *Holder
	// Err is why the wait ended: the context's error.
	Err error
}

func (e *LockedError) Error() string {
	who := "another process"
	if h := e.Holder; h != nil {
		who = fmt.Sprintf("%s, pid %d on host %s since %s", h.What, h.PID, h.Host, h.Since.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("hospital %s is locked by %s; gave up waiting: %v", e.Hospital, who, e.Err)
}

func (e *LockedError) Unwrap() error { return e.Err }

// Lock is a held hospital lock.
type Lock struct {
	Hospital string
	s        *Store
	release  func() error
	once     sync.Once
	err      error
}

// Unlock releases the lock; calling it again does nothing.
func (l *Lock) Unlock() error {
	l.once.Do(func() {
		l.err = l.release()
		l.s.mu.Lock()
		delete(l.s.locks, l)
		l.s.mu.Unlock()
	})
	return l.err
}

// lockPoll is how often a waiting Lock tries again.
const lockPoll = 200 * time.Millisecond

// Lock takes the hospital's lock, which excludes every other holder in
// any process on the same database, so that two runs never load one
// hospital's files at once. It waits until the lock is free or ctx ends;
// then the error is a *LockedError that names the holder. what says what
// the caller is doing ("ingest"), for that message. A holder that dies
// loses the lock: on PostgreSQL with its session, on SQLite when the lock
// expires (WithLockTTL).
func (s *Store) Lock(ctx context.Context, hospital, what string) (*Lock, error) {
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	token := hex.EncodeToString(raw[:])
	host, _ := os.Hostname()
	me := Holder{What: what, PID: os.Getpid(), Host: host}
	for {
		me.Since = time.Now()
		release, ok, err := s.d.tryLock(ctx, hospital, token, me)
		if err != nil {
			if ctx.Err() != nil {
				return nil, &LockedError{Hospital: hospital, Holder: s.holder(hospital), Err: ctx.Err()}
			}
			return nil, fmt.Errorf("lock hospital %s: %w", hospital, err)
		}
		if ok {
			l := &Lock{Hospital: hospital, s: s, release: release}
			s.mu.Lock()
			s.locks[l] = struct{}{}
			s.mu.Unlock()
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, &LockedError{Hospital: hospital, Holder: s.holder(hospital), Err: ctx.Err()}
		case <-time.After(lockPoll):
		}
	}
}

// holder reads who holds a hospital's lock, or nil.
func (s *Store) holder(hospital string) *Holder {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var h Holder
	err := s.db.QueryRowContext(ctx, "SELECT what, pid, host, since FROM ward_locks WHERE hospital = $1", hospital).
		Scan(&h.What, &h.PID, &h.Host, timeScanner{&h.Since})
	if err != nil {
		return nil
	}
	return &h
}
