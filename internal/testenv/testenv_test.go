package testenv

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestMain(m *testing.M) { Main(m) }

func TestPostgresGivesFreshDatabases(t *testing.T) {
	ctx := context.Background()
	a, b := Postgres(t), Postgres(t)
	if a == b {
		t.Fatalf("two calls gave the same database %s", a)
	}
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE t (x int); INSERT INTO t VALUES (41), (1)"); err != nil {
		t.Fatal(err)
	}
	var sum int
	if err := conn.QueryRow(ctx, "SELECT sum(x) FROM t").Scan(&sum); err != nil || sum != 42 {
		t.Fatalf("sum = %d, %v; want 42", sum, err)
	}
	conn2, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close(ctx)
	var n int
	if err := conn2.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 't'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("second database sees table t (%d, %v)", n, err)
	}
}

func TestRegistryServesTheAPI(t *testing.T) {
	r := StartRegistry(t)
	resp, err := http.Get("http://" + r.Host + "/v2/_catalog")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Docker-Distribution-Api-Version"), "registry/2") {
		t.Fatalf("catalog: %s %v", resp.Status, resp.Header)
	}
}

func TestSSHDAcceptsTheKeyAndChecksTheHost(t *testing.T) {
	s := StartSSHD(t)
	key, err := os.ReadFile(s.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	hk, err := knownhosts.New(s.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{User: s.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: hk, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("dial: %v\n%s", err, s.Log())
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.RequestSubsystem("sftp"); err != nil {
		t.Fatalf("sftp subsystem: %v\n%s", err, s.Log())
	}
}

func TestBareRepoTakesAPush(t *testing.T) {
	remote := BareRepo(t)
	work := t.TempDir()
	Git(t, work, "init", "--quiet", "--initial-branch=main")
	if err := os.WriteFile(filepath.Join(work, "a"), []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	Git(t, work, "add", "a")
	Git(t, work, "commit", "--quiet", "-m", "first")
	Git(t, work, "push", "--quiet", remote, "main")
	if got := Git(t, remote, "log", "--format=%s", "main"); got != "first" {
		t.Fatalf("remote log = %q", got)
	}
}
