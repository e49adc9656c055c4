package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestLockExcludesASecondHolder(t *testing.T) {
	engines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		a, b := open(t, url), open(t, url)
		la, err := a.Lock(ctx, "st-olaf", "ingest")
		if err != nil {
			t.Fatal(err)
		}
		// Another hospital is not affected.
		lo, err := b.Lock(ctx, "sparcs", "ingest")
		if err != nil {
			t.Fatalf("lock of another hospital: %v", err)
		}
		if err := lo.Unlock(); err != nil {
			t.Fatal(err)
		}

		wait, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
		defer cancel()
		_, err = b.Lock(wait, "st-olaf", "ingest")
		var locked *LockedError
		if !errors.As(err, &locked) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("second holder: %v, want a LockedError after the deadline", err)
		}
		host, _ := os.Hostname()
		want := fmt.Sprintf("hospital st-olaf is locked by ingest, pid %d on host %s since ", os.Getpid(), host)
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q\ndoes not say %q", err, want)
		}
		// The same store cannot take it twice either.
		wait2, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel2()
		if _, err := a.Lock(wait2, "st-olaf", "ingest"); !errors.As(err, &locked) {
			t.Fatalf("same store, second lock: %v", err)
		}

		// Once released, the waiter gets it.
		got := make(chan error, 1)
		go func() {
			l, err := b.Lock(ctx, "st-olaf", "train")
			if err == nil {
				err = l.Unlock()
			}
			got <- err
		}()
		time.Sleep(300 * time.Millisecond)
		if err := la.Unlock(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the waiter did not get the released lock")
		}
		if err := la.Unlock(); err != nil {
			t.Fatalf("second Unlock: %v", err)
		}
	})
}

func TestCloseReleasesLocks(t *testing.T) {
	engines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		a, err := Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Lock(ctx, "st-olaf", "ingest"); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		wait, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		l, err := open(t, url).Lock(wait, "st-olaf", "ingest")
		if err != nil {
			t.Fatalf("lock after the holder closed: %v", err)
		}
		l.Unlock()
	})
}

// lockHelperEnv makes the test binary a lock holder that never lets go
// (see lockHelper), to be killed as a crashed ingest would be.
const lockHelperEnv = "WARD_STORE_TEST_LOCK_HOLDER"

func lockHelper(url string) {
	ctx := context.Background()
	s, err := Open(ctx, url, WithLockTTL(time.Second))
	if err == nil {
		_, err = s.Lock(ctx, "st-olaf", "helper")
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	select {}
}

func TestDeadHoldersLockFrees(t *testing.T) {
	engines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), lockHelperEnv+"="+url)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		line, _ := bufio.NewReader(out).ReadString('\n')
		if strings.TrimSpace(line) != "locked" {
			t.Fatalf("helper: %q", line)
		}

		s := open(t, url, WithLockTTL(time.Second))
		wait, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
		defer cancel()
		// The live helper keeps its lock past its TTL: its heartbeat
		// renews it.
		_, err = s.Lock(wait, "st-olaf", "ingest")
		var locked *LockedError
		if !errors.As(err, &locked) || locked.Holder == nil || locked.Holder.PID != cmd.Process.Pid || locked.Holder.What != "helper" {
			t.Fatalf("lock held by a live helper: %v (holder %+v), want it to name pid %d", err, locked, cmd.Process.Pid)
		}

		// Killed without a chance to unlock, as a crash would.
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		start := time.Now()
		wait, cancel = context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		l, err := s.Lock(wait, "st-olaf", "ingest")
		if err != nil {
			t.Fatalf("lock after the holder died: %v", err)
		}
		t.Logf("lock freed %v after the holder was killed", time.Since(start).Round(time.Millisecond))
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
	})
}
