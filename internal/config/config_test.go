package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func load(t *testing.T, args []string, env []string, file string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	f := BindFlags(fs)
	if file != "" {
		args = append(args, "--config", file)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return Load(f, env)
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedenceFlagEnvFileDefault(t *testing.T) {
	file := writeFile(t, "ward.yaml", "database: sqlite:from-file.db\nstaging: file-staging\nhospitals: file-hospitals\n")
	c, err := load(t, []string{"--database", "sqlite:from-flag.db"},
		[]string{"WARD_DATABASE=sqlite:from-env.db", "WARD_STAGING=env-staging"}, file)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ key, value, source string }{
		{"database", "sqlite:from-flag.db", "flag --database"},
		{"staging", "env-staging", "env WARD_STAGING"},
		{"hospitals", "file-hospitals", "file " + file + ":3"},
		{"log_level", "info", "default"},
	}
	for _, c2 := range cases {
		if got := c.Get(c2.key); got != c2.value {
			t.Errorf("%s = %q, want %q", c2.key, got, c2.value)
		}
		if got := c.Source(c2.key).String(); got != c2.source {
			t.Errorf("%s source = %q, want %q", c2.key, got, c2.source)
		}
	}
}

func TestSecretsAreRedacted(t *testing.T) {
	c, err := load(t, nil, []string{
		"WARD_DATABASE=postgres://ward:hunter2@db.example:5432/ward?sslmode=disable",
		"WARD_REGISTRY_PASSWORD=tok3n",
		"WARD_SIGNING_PASSWORD=s3cret",
		"WARD_PGP_PASSPHRASE=pass-phrase",
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, e := range c.Entries() {
		all.WriteString(e.Key + "=" + e.Value + "\n")
	}
	for _, secret := range []string{"hunter2", "tok3n", "s3cret", "pass-phrase"} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("entries show the secret %q:\n%s", secret, all.String())
		}
	}
	if !strings.Contains(all.String(), "database=postgres://ward:REDACTED@db.example:5432/ward") {
		t.Errorf("database not shown redacted:\n%s", all.String())
	}
	if !strings.Contains(all.String(), "registry_password=REDACTED") {
		t.Errorf("registry_password not shown as REDACTED:\n%s", all.String())
	}
	if got := Redact("postgres://db/ward?password=pw&sslmode=disable"); strings.Contains(got, "pw&") {
		t.Errorf("query password not redacted: %s", got)
	}
}

func TestBadConfiguration(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.key")
	cases := []struct {
		name string
		args []string
		env  []string
		file string
		want string
	}{
		{"typo in env", nil, []string{"WARD_DATABSE=sqlite:x.db"}, "",
			"config WARD_DATABSE (from the environment): unknown setting; did you mean WARD_DATABASE?"},
		{"typo in file", nil, nil, "databse: sqlite:x.db\n",
			":1): unknown setting; did you mean database?"},
		{"bad database scheme", nil, []string{"WARD_DATABASE=mysql://db/ward"}, "",
			`config database (from env WARD_DATABASE): "mysql://db/ward": want sqlite:PATH or a postgres:// URL`},
		{"empty sqlite path", []string{"--database", "sqlite:"}, nil, "",
			"config database (from flag --database): sqlite: needs a file path"},
		{"postgres without host", nil, []string{"WARD_DATABASE=postgres:///ward"}, "",
			`config database (from env WARD_DATABASE): "postgres:///ward": no host`},
		{"sftp wrong scheme", nil, []string{"WARD_SFTP=ftp://u@h/in"}, "",
			`config sftp (from env WARD_SFTP): "ftp://u@h/in": want sftp://user@host:port/base/path`},
		{"sftp without user", nil, []string{"WARD_SFTP=sftp://host:22/in"}, "",
			"no user"},
		{"sftp bad port", nil, []string{"WARD_SFTP=sftp://u@host:99999/in"}, "",
			`bad port "99999"`},
		{"sftp password", nil, []string{"WARD_SFTP=sftp://u:pw@host/in"}, "",
			"a password in the URL is not supported: use WARD_SFTP_KEY"},
		{"registry with scheme", []string{"--registry", "https://reg.example"}, nil, "",
			`config registry (from flag --registry): "https://reg.example": want host[:port][/prefix], without a scheme`},
		{"registry bad prefix", nil, []string{"WARD_REGISTRY=reg.example/Team"}, "",
			"bad path prefix"},
		{"missing key file", nil, []string{"WARD_SIGNING_KEY=" + missing}, "",
			"config signing_key (from env WARD_SIGNING_KEY): file " + missing + " does not exist or cannot be read"},
		{"folder for a file", []string{"--known-hosts", os.TempDir()}, nil, "",
			"is a folder, want a file"},
		{"bad bool", nil, []string{"WARD_INSECURE_REGISTRY=maybe"}, "",
			`config insecure_registry (from env WARD_INSECURE_REGISTRY): "maybe" is not true or false`},
		{"bad log format", nil, nil, "log_format: xml\n",
			`: "xml": want auto, json or text`},
		{"nested value in file", nil, nil, "database:\n  url: x\n",
			"want a single value"},
		{"file is not a mapping", nil, nil, "- a\n- b\n",
			"want a mapping of settings"},
		{"missing config file", []string{"--config", missing}, nil, "",
			"config config (from flag --config): cannot read " + missing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := ""
			if tc.file != "" {
				file = writeFile(t, "ward.yaml", tc.file)
			}
			_, err := load(t, tc.args, tc.env, file)
			if err == nil {
				t.Fatalf("no error; want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestOtherWardVariablesAreNotTypos(t *testing.T) {
	if _, err := load(t, nil, []string{"WARD_MODEL=/models/model.json", "WARD_TEST_COSIGN=/cache/cosign", "HOME=/root"}, ""); err != nil {
		t.Fatal(err)
	}
}

func TestParsers(t *testing.T) {
	s, err := ParseSFTP("sftp://ward@sftp.example/srv/drop")
	if err != nil || s.Host != "sftp.example:22" || s.User != "ward" || s.Base != "/srv/drop" {
		t.Fatalf("ParseSFTP = %+v, %v", s, err)
	}
	r, err := ParseRegistry("localhost:5000/group/ml")
	if err != nil || r.Host != "localhost:5000" || r.Prefix != "group/ml" {
		t.Fatalf("ParseRegistry = %+v, %v", r, err)
	}
	for host, want := range map[string]bool{"localhost:5000": true, "127.0.0.1": true, "[::1]:5000": true, "reg.example:5000": false, "10.0.0.1": false} {
		if IsLoopback(host) != want {
			t.Errorf("IsLoopback(%s) = %v", host, !want)
		}
	}
}

// Redact hides a token or password wherever a URL holds one, in a setting
// or in a text around it, and leaves everything else as it was.
func TestRedact(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"https://ghp_T0KEN@git.example/ml/manifest.git", "https://REDACTED@git.example/ml/manifest.git"},
		{"https://ward:hunter2@git.example/ml/manifest.git", "https://ward:REDACTED@git.example/ml/manifest.git"},
		{"https://ward:p@ss@git.example/x", "https://ward:REDACTED@git.example/x"},
		{"postgres://ward:pw@db/ward?sslmode=verify-full&sslpassword=k3y", "postgres://ward:REDACTED@db/ward?sslmode=verify-full&sslpassword=REDACTED"},
		{"postgres://db/ward?password=pw&sslmode=disable", "postgres://db/ward?password=REDACTED&sslmode=disable"},
		{"host=db user=ward password=pw sslpassword=k dbname=ward", "host=db user=ward password=REDACTED sslpassword=REDACTED dbname=ward"},
		{`fetch "https://x-access-token:ghs_abc@github.com/g/m.git": 401; retry https://ghs_abc@github.com/g/m.git`,
			`fetch "https://x-access-token:REDACTED@github.com/g/m.git": 401; retry https://REDACTED@github.com/g/m.git`},
		{`{"url":"https://TOKEN@h/r.git","error":"dial https://TOKEN@h/r.git"}`, `{"url":"https://REDACTED@h/r.git","error":"dial https://REDACTED@h/r.git"}`},
		// Nothing secret: as it was.
		{"ssh://git@git.example/ml/manifest.git", "ssh://git@git.example/ml/manifest.git"},
		{"sftp://ward@sftp.example:22/drop", "sftp://ward@sftp.example:22/drop"},
		{"git@github.com:g/m.git", "git@github.com:g/m.git"},
		{"registry.example/ml@sha256:abcd", "registry.example/ml@sha256:abcd"},
		{"https://git.example/a@b", "https://git.example/a@b"},
		{"sqlite:.ward/ward.db", "sqlite:.ward/ward.db"},
	} {
		if got := Redact(c.in); got != c.want {
			t.Errorf("Redact(%s)\n = %s\nwant %s", c.in, got, c.want)
		}
	}
}

// ward config shows every URL setting redacted: a token in the manifest
// repo's URL, a password and sslpassword in the database URL.
func TestEntriesRedactURLs(t *testing.T) {
	c, err := load(t, nil, []string{
		"WARD_MANIFEST_REPO=https://ghp_T0KEN@git.example/ml/manifest.git",
		"WARD_DATABASE=postgres://ward:hunter2@db.example/ward?sslpassword=k3y",
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, e := range c.Entries() {
		all.WriteString(e.Key + "=" + e.Value + "\n")
	}
	for _, secret := range []string{"ghp_T0KEN", "hunter2", "k3y"} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("ward config shows %q:\n%s", secret, all.String())
		}
	}
	if !strings.Contains(all.String(), "manifest_repo=https://REDACTED@git.example/ml/manifest.git") {
		t.Errorf("manifest_repo:\n%s", all.String())
	}
}
