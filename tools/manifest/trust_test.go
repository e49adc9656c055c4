package manifest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/testenv"
)

// keys are the signers of the trust tests: ward's own two (the pipeline's
// WARD_MANIFEST_SIGN_KEY, SSH and OpenPGP), two people who sign with the
// real git (gpg, and ssh-keygen with gpg.format=ssh), and an outsider with
// push access.
type keys struct {
	wardSSH, personSSH, outsider *testenv.SSHKey
	wardPGP, person              *testenv.GPGKey
	wardPGPFile                  string
}

func newKeys(t *testing.T) *keys {
	t.Helper()
	k := &keys{
		wardSSH:   testenv.NewSSHKey(t, "ward-ci"),
		personSSH: testenv.NewSSHKey(t, "ada"),
		outsider:  testenv.NewSSHKey(t, "mallory"),
		wardPGP:   testenv.NewGPGKey(t, "Ward CI", "ci@ward.invalid"),
		person:    testenv.NewGPGKey(t, "Grace Hopper", "grace@ward.invalid"),
	}
	k.wardPGPFile = filepath.Join(t.TempDir(), "ward.asc")
	if err := os.WriteFile(k.wardPGPFile, []byte(k.wardPGP.Secret), 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// trust is the group's trust file: everyone but the outsider.
func (k *keys) trust() string {
	return "# who may write the manifest\n" + k.wardSSH.AllowedSigner("ci@ward.invalid") + "\n" +
		k.personSSH.AllowedSigner("ada@ward.invalid") + "\n\n" + k.wardPGP.Public + k.person.Public
}

// trustedRemote is a manifest repo initialized with the trust file, by
// ward signing with its SSH key.
func trustedRemote(t *testing.T, k *keys) (string, *Repo) {
	t.Helper()
	remote := testenv.BareRepo(t)
	r := newRepo(t, remote, WithSignKey(k.wardSSH.Private))
	res, err := r.InitTrust(context.Background(), false, []byte(k.trust()))
	if err != nil || res.Status != StatusCommitted {
		t.Fatalf("init --trust: %+v, %v", res, err)
	}
	return remote, r
}

// push commits what change did in a clone, signed with key (nil: not
// signed), and pushes it; it returns the new commit.
func push(t *testing.T, remote string, key any, msg string, change func(dir string)) string {
	t.Helper()
	dir := clone(t, remote)
	change(dir)
	testenv.GitSigned(t, dir, key, "add", "-A")
	testenv.GitSigned(t, dir, key, "commit", "--quiet", "-m", msg)
	testenv.Git(t, dir, "push", "--quiet", "origin", "main")
	return testenv.Git(t, dir, "rev-parse", "HEAD")
}

// revertBy pushes a git revert of commit signed with key.
func revertBy(t *testing.T, remote string, key any, commit string) string {
	t.Helper()
	dir := clone(t, remote)
	testenv.GitSigned(t, dir, key, "revert", "--no-edit", commit)
	testenv.Git(t, dir, "push", "--quiet", "origin", "main")
	return testenv.Git(t, dir, "rev-parse", "HEAD")
}

// The history a hospital follows is signed: ward's own commits (SSH and
// OpenPGP) and people's git commit -S (GnuPG, SSH) verify; an unsigned
// commit, an outsider's, a trust change signed only by the key it adds and
// a force push are refused, each naming the commit; a signed commit after
// one of them recovers without rewriting history.
func TestTrustedHistory(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t)
	remote, r := trustedRemote(t, k)
	f := r.Follow()
	applied := ""
	read := func(id string) (Head, error) {
		t.Helper()
		return f.Read(ctx, id, applied)
	}
	follow := func(id, signer string) Head {
		t.Helper()
		h, err := read(id)
		if err != nil {
			t.Fatalf("read %s at %s: %v", id, short(remoteHead(t, remote)), err)
		}
		if !h.Provenance.Trusted || h.Provenance.Decider == nil || !strings.Contains(h.Provenance.Decider.Signer, signer) {
			t.Fatalf("read %s: provenance %+v, want signed by %q", id, h.Provenance, signer)
		}
		applied = h.Commit
		return h
	}
	refused := func(id string, says ...string) Head {
		t.Helper()
		h, err := read(id)
		wantErr(t, err, ErrUntrusted, says...)
		if h.Commit != remoteHead(t, remote) {
			t.Errorf("refusal at %s, the tip is %s", h.Commit, remoteHead(t, remote))
		}
		return h
	}

	// ward's SSH-signed deploy, and what the real git says of it.
	c1 := deploy(t, r, "st-olaf/v1").Commits[0]
	follow("st-olaf", "SSH ci@ward.invalid")
	signers := filepath.Join(t.TempDir(), "allowed_signers")
	writeFile(t, signers, k.wardSSH.AllowedSigner("ci@ward.invalid")+"\n")
	testenv.Git(t, remote, "-c", "gpg.ssh.allowedSignersFile="+signers, "verify-commit", c1)

	// ward's OpenPGP-signed deploy, which gpg verifies too.
	rp := newRepo(t, remote, WithSignKey(k.wardPGPFile))
	c2 := deploy(t, rp, "st-olaf/v2").Commits[0]
	follow("st-olaf", "OpenPGP "+k.wardPGP.Fingerprint)
	verify := execGit(remote, "verify-commit", c2)
	verify.Env = append(verify.Env, "GNUPGHOME="+k.wardPGP.Home)
	if out, err := verify.CombinedOutput(); err != nil {
		t.Fatalf("git verify-commit of ward's OpenPGP commit: %v\n%s", err, out)
	}

	// A person's git revert, GnuPG-signed; a person's SSH-signed edit.
	revertBy(t, remote, k.person, c2)
	if h := follow("st-olaf", "OpenPGP "+k.person.Fingerprint); h.Release.Version != "v1" || !h.Provenance.Decider.Revert {
		t.Fatalf("after a signed git revert: %+v, %+v", h.Release, h.Provenance.Decider)
	}
	push(t, remote, k.personSSH, "st-olaf: a note", func(dir string) {
		writeFile(t, filepath.Join(dir, "hospitals/st-olaf/NOTES.md"), "on call: ada\n")
	})
	follow("st-olaf", "SSH ada@ward.invalid")

	// An unsigned commit puts v2 back: refused, and still refused after a
	// signed commit to another hospital; mercy follows that one.
	unsigned := push(t, remote, nil, "st-olaf: v2 again", func(dir string) {
		testenv.Git(t, dir, "checkout", c2, "--", "hospitals/st-olaf")
	})
	if h := refused("st-olaf", short(unsigned), "not signed", "hospitals/st-olaf/"); h.Release == nil || h.Release.Version != "v2" {
		t.Errorf("the refused head's release: %+v", h.Release)
	}
	deploy(t, r, "mercy/v1")
	refused("st-olaf", short(unsigned), "not signed")
	if _, err := f.Read(ctx, "mercy", applied); err != nil {
		t.Fatalf("mercy after its signed deploy: %v", err)
	}
	// A signed revert of it recovers.
	revertBy(t, remote, k.personSSH, unsigned)
	if h := follow("st-olaf", "SSH ada@ward.invalid"); h.Release.Version != "v1" {
		t.Fatalf("after the signed revert: %+v", h.Release)
	}

	// A commit signed by a key that the trust file does not list.
	foreign := push(t, remote, k.outsider, "st-olaf: v2 again", func(dir string) {
		testenv.Git(t, dir, "checkout", c2, "--", "hospitals/st-olaf")
	})
	refused("st-olaf", short(foreign), "SSH key", "does not list")
	revertBy(t, remote, k.person, foreign)
	follow("st-olaf", k.person.Fingerprint)

	// The outsider adds their own key to the trust file and signs that:
	// refused for every hospital, until a listed key signs its revert.
	grab := push(t, remote, k.outsider, "trust: add mallory", func(dir string) {
		appendFile(t, filepath.Join(dir, TrustFile), k.outsider.AllowedSigner("mallory@evil.invalid")+"\n")
	})
	refused("st-olaf", short(grab), TrustFile, "does not list")
	_, err := f.Read(ctx, "mercy", applied)
	wantErr(t, err, ErrUntrusted, short(grab))
	_, err = r.Deploy(ctx, Deployment{Hospital: "st-olaf", Image: img("st-olaf/v3").Ref})
	wantErr(t, err, ErrUntrusted, short(grab), "nothing committed")
	revertBy(t, remote, k.person, grab)
	follow("st-olaf", k.person.Fingerprint)

	// A listed key adds the outsider: from then on their commits count.
	push(t, remote, k.personSSH, "trust: add mallory, approved", func(dir string) {
		appendFile(t, filepath.Join(dir, TrustFile), k.outsider.AllowedSigner("mallory@ward.invalid")+"\n")
	})
	push(t, remote, k.outsider, "st-olaf: a note", func(dir string) {
		writeFile(t, filepath.Join(dir, "hospitals/st-olaf/NOTES.md"), "on call: mallory\n")
	})
	follow("st-olaf", "SSH mallory@ward.invalid")

	// A force push that drops the commit applied last.
	last := applied
	testenv.Git(t, remote, "update-ref", "refs/heads/main", c1)
	refused("st-olaf", "does not descend from "+short(last), "force push")
	// A reader that starts afresh (no commit applied) takes the history.
	if h, err := r.Follow().Read(ctx, "st-olaf", ""); err != nil || h.Release.Version != "v1" {
		t.Fatalf("a fresh reader after the force push: %+v, %v", h, err)
	}
}

// ward refuses to write commits that the trust file would refuse: init
// --trust and a deploy signed by no listed key, or not signed at all.
func TestTrustRefusesUnlistedSigner(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t)
	_, err := newRepo(t, testenv.BareRepo(t)).InitTrust(ctx, false, []byte(k.trust()))
	wantErr(t, err, ErrUsage, "WARD_MANIFEST_SIGN_KEY")
	_, err = newRepo(t, testenv.BareRepo(t), WithSignKey(k.outsider.Private)).InitTrust(ctx, false, []byte(k.trust()))
	wantErr(t, err, ErrUsage, "WARD_MANIFEST_SIGN_KEY")
	_, err = newRepo(t, testenv.BareRepo(t), WithSignKey(k.wardSSH.Private)).InitTrust(ctx, false, []byte("# nobody\n"))
	wantErr(t, err, ErrUsage, "no key")

	remote, _ := trustedRemote(t, k)
	head := remoteHead(t, remote)
	for _, r := range []*Repo{newRepo(t, remote), newRepo(t, remote, WithSignKey(k.outsider.Private))} {
		_, err := r.Deploy(ctx, Deployment{Hospital: "st-olaf", Image: img("st-olaf/v1").Ref})
		wantErr(t, err, ErrUsage, TrustFile, "WARD_MANIFEST_SIGN_KEY", "nothing committed")
	}
	if remoteHead(t, remote) != head {
		t.Fatal("a refused deploy pushed")
	}
}

// WARD_MANIFEST_TRUST pins the keys on the reader's side: the repo's own
// trust file does not widen them.
func TestTrustAnchor(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t)
	remote, r := trustedRemote(t, k)
	deploy(t, r, "st-olaf/v1")
	anchor := filepath.Join(t.TempDir(), "trust.txt")
	writeFile(t, anchor, k.personSSH.AllowedSigner("ada@ward.invalid")+"\n")
	pinned := newRepo(t, remote, WithTrust(anchor))
	_, err := pinned.Follow().Read(ctx, "st-olaf", "")
	wantErr(t, err, ErrUntrusted, "does not list", anchor)
	revertBy(t, remote, k.personSSH, testenv.Git(t, remote, "rev-parse", "main"))
	push(t, remote, k.personSSH, "base: a note", func(dir string) {
		writeFile(t, filepath.Join(dir, "base/NOTES.md"), "base\n")
	})
	if _, err := pinned.Follow().Read(ctx, "st-olaf", ""); err != nil {
		t.Fatalf("signed by the pinned key: %v", err)
	}
	_, err = New(remote, WithTrust(filepath.Join(t.TempDir(), "missing")))
	wantErr(t, err, ErrUsage, "trust file")
}

func appendFile(t *testing.T, name, data string) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
}

// A signature copied onto another commit (the message changed, the
// signature kept) does not verify, for SSH and OpenPGP alike.
func TestTamperedSignatureRefused(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t)
	for _, key := range []string{k.wardSSH.Private, k.wardPGPFile} {
		remote, _ := trustedRemote(t, k)
		r := newRepo(t, remote, WithSignKey(key))
		c := deploy(t, r, "st-olaf/v1").Commits[0]
		if _, err := r.Follow().Read(ctx, "st-olaf", ""); err != nil {
			t.Fatalf("%s: the signed deploy: %v", key, err)
		}
		raw := testenv.Git(t, remote, "cat-file", "commit", c)
		forged := strings.Replace(raw, "deploy(st-olaf): v1", "deploy(st-olaf): v1 (approved)", 1)
		file := filepath.Join(t.TempDir(), "commit")
		writeFile(t, file, forged+"\n")
		h := testenv.Git(t, remote, "hash-object", "-t", "commit", "-w", file)
		testenv.Git(t, remote, "update-ref", "refs/heads/main", h)
		_, err := r.Follow().Read(ctx, "st-olaf", "")
		wantErr(t, err, ErrUntrusted, short(h), "does not verify")
	}
}

// Whatever a trust file or a commit's SSH signature holds, reading it ends
// in a key list or an error, never a crash.
func FuzzTrustFile(f *testing.F) {
	f.Add([]byte("ci@ward.invalid ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb3oTz7e2HEZpyWyN4Wcz5A0nJlZq8dHfT0cZ3V1e2m ci\n"))
	f.Add([]byte("ci@ward.invalid namespaces=\"git\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb3oTz7e2HEZpyWyN4Wcz5A0nJlZq8dHfT0cZ3V1e2m\n"))
	f.Add([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ\n-----END PGP PUBLIC KEY BLOCK-----\n"))
	f.Add([]byte("-----BEGIN SSH SIGNATURE-----\nU1NIU0lHAAAAAQ==\n-----END SSH SIGNATURE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if tr, err := ParseTrust("fuzz", data); err == nil {
			_ = tr.Describe()
		}
		_, _ = verifySSHSIG(data, []byte("message"), "git")
	})
}
