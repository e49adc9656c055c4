package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/tools/signing"
)

// --check validates the example configuration, the keys and the folders
// without the network, says what it checked, and exits 0; a bad key or
// setting exits 2 naming it.
func TestCheck(t *testing.T) {
	key, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := signing.MarshalPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pubFile := filepath.Join(dir, "ward.pub")
	if err := os.WriteFile(pubFile, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	notAKey := filepath.Join(dir, "not-a-key.pub")
	os.WriteFile(notAKey, []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), 0o644)
	// The example file, with its keys made here: an SSH deploy key, the
	// Git host's key, the image key.
	keygen := testenv.LookPath(t, "ssh-keygen", "openssh-client")
	testenv.Run(t, dir, keygen, "-q", "-t", "ed25519", "-N", "", "-C", "ward-agent", "-f", filepath.Join(dir, "manifest_deploy_key"))
	hostKey, err := os.ReadFile(filepath.Join(dir, "manifest_deploy_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "known_hosts"), append([]byte("git.example "), hostKey...), 0o644)
	example, err := os.ReadFile("agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	config := writeFile(t, strings.ReplaceAll(string(example), "/etc/ward/", dir+"/"))
	repo := "ssh://git@git.example/group/manifest.git"
	data := filepath.Join(dir, "state")
	var env []string
	base := []string{"--config", config, "--hospital", "st-olaf", "--data", data, "--check"}

	var out, errOut bytes.Buffer
	if code := run(context.Background(), base, &out, &errOut, env); code != exit.OK {
		t.Fatalf("--check: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"ok    hospital st-olaf", "ok    verify key " + pubFile, "ok    manifest repo " + repo, "ok    data folder " + data, "the settings and the keys check"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--check printed\n%s\nwant %q", out.String(), want)
		}
	}
	if st, err := os.Stat(data); err != nil || !st.IsDir() {
		t.Errorf("--check did not make the data folder: %v", err)
	}
	if entries, _ := os.ReadDir(data); len(entries) != 0 {
		t.Errorf("--check left files in the data folder: %v", entries)
	}

	for _, c := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no hospital", env, []string{"--config", config, "--check"}, "want --hospital ID"},
		{"a bad hospital", env, []string{"--config", config, "--hospital", "../x", "--check"}, "want lower-case letters"},
		{"a key that is not one", append(env, "WARD_VERIFY_KEY="+notAKey), base, "verify key " + notAKey},
		{"a missing key", append(env, "WARD_VERIFY_KEY="+filepath.Join(dir, "missing.pub")), base, "missing.pub does not exist"},
		{"a deploy key that is not one", append(env, "WARD_MANIFEST_SSH_KEY="+pubFile), base, pubFile},
		{"a password in the manifest repo's URL", append(env, "WARD_MANIFEST_REPO=https://u:p@git.example/m.git"), base, "a password in the URL is not supported"},
		{"a data folder that cannot be made", env, []string{"--config", config, "--hospital", "st-olaf", "--data", filepath.Join(pubFile, "x"), "--check"}, "--data " + filepath.Join(pubFile, "x")},
		{"a typo in the file", env, []string{"--config", writeFile(t, "verify_kye: x\n"), "--hospital", "st-olaf", "--check"}, "verify_kye"},
		{"a bad bound", env, append(base, "--max-model-bytes", "0"), "--max-model-bytes 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), c.args, &out, &errOut, c.env)
			if code != exit.Config || !strings.Contains(out.String()+errOut.String(), c.want) {
				t.Errorf("exit %d\n%s%s\nwant 2 and %q", code, out.String(), errOut.String(), c.want)
			}
		})
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// The systemd unit is one that systemd takes without a warning, runs the
// agent sandboxed (a dynamic user, a read-only system, a state folder),
// and passes the agent only flags it has.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("ward-agent@.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nDynamicUser=yes\n", "\nProtectSystem=strict\n", "\nStateDirectory=ward-agent/%i\n", "\nNoNewPrivileges=yes\n", "--data /var/lib/ward-agent/%i"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("the unit has no %q", strings.TrimSpace(want))
		}
	}
	for _, line := range strings.Split(string(unit), "\n") {
		cmd, ok := strings.CutPrefix(line, "ExecStart=")
		if !ok {
			cmd, ok = strings.CutPrefix(line, "ExecStartPre=")
		}
		if !ok {
			continue
		}
		args := strings.Fields(strings.ReplaceAll(cmd, "%i", "st-olaf"))[1:]
		if strings.Contains(cmd, "--check") {
			continue
		}
		// The flags parse: --help after them prints the usage.
		var out, errOut bytes.Buffer
		if code := run(context.Background(), append(args, "--help"), &out, &errOut, nil); code != exit.OK {
			t.Errorf("%s: exit %d: %s", cmd, code, errOut.String())
		}
	}
	analyze := testenv.LookPath(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	local := strings.ReplaceAll(string(unit), "/usr/local/bin/ward-agent", bin)
	if err := os.WriteFile(filepath.Join(dir, "ward-agent@.service"), []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", "--man=no", filepath.Join(dir, "ward-agent@st-olaf.service"))
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
