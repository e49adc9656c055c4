// Package config resolves ward's settings: flags first, then WARD_*
// environment variables, then a ward.yaml file, then defaults. Every value
// remembers where it came from, so that `ward config` can show it and an
// error can name the setting and its source. Every command of tools/ward
// reads its settings through here.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Kind says how a setting's value is checked.
type Kind int

const (
	Text Kind = iota
	Bool
	// File must name an existing file when set.
	File
	// Database is sqlite:PATH or a postgres:// URL.
	Database
	// SFTP is sftp://user@host:port/base/path.
	SFTP
	// Registry is host[:port][/prefix].
	Registry
	// LogFormat is auto, json or text.
	LogFormat
	// LogLevel is debug, info, warn or error.
	LogLevel
)

// Setting describes one configuration key.
type Setting struct {
	Key     string // in ward.yaml, and the name in `ward config`
	Env     string
	Flag    string
	Default string
	Secret  bool
	Kind    Kind
	Help    string
}

// Settings lists every key, in the order `ward config` prints them.
var Settings = []Setting{
	{Key: "database", Env: "WARD_DATABASE", Flag: "database", Default: "sqlite:.ward/ward.db", Kind: Database, Help: "sqlite:PATH or a postgres:// URL"},
	{Key: "staging", Env: "WARD_STAGING", Flag: "staging", Default: ".ward/staging", Help: "folder of the staged (still encrypted) extracts"},
	{Key: "hospitals", Env: "WARD_HOSPITALS", Flag: "hospitals", Default: "hospitals", Help: "folder of the hospitals' contracts (<id>/hospital.yaml)"},
	{Key: "sftp", Env: "WARD_SFTP", Flag: "sftp", Kind: SFTP, Help: "sftp://user@host:port/base/path of the hospitals' drop box"},
	{Key: "sftp_key", Env: "WARD_SFTP_KEY", Flag: "sftp-key", Kind: File, Help: "SSH private key for the SFTP server"},
	{Key: "known_hosts", Env: "WARD_KNOWN_HOSTS", Flag: "known-hosts", Kind: File, Help: "known_hosts file holding the host keys of the SFTP server and of an SSH manifest repo"},
	{Key: "pgp_key", Env: "WARD_PGP_KEY", Flag: "pgp-key", Kind: File, Help: "OpenPGP private key that decrypts the extracts"},
	{Key: "pgp_passphrase", Env: "WARD_PGP_PASSPHRASE", Flag: "", Secret: true, Help: "passphrase of the OpenPGP private key"},
	{Key: "age_identity", Env: "WARD_AGE_IDENTITY", Flag: "age-identity", Kind: File, Help: "age identity file that decrypts the extracts"},
	{Key: "registry", Env: "WARD_REGISTRY", Flag: "registry", Kind: Registry, Help: "OCI registry host[:port][/prefix] the images go to"},
	{Key: "insecure_registry", Env: "WARD_INSECURE_REGISTRY", Flag: "insecure-registry", Default: "false", Kind: Bool, Help: "allow plain HTTP to a registry that is not on loopback"},
	{Key: "registry_username", Env: "WARD_REGISTRY_USERNAME", Help: "registry user (else the Docker config file)"},
	{Key: "registry_password", Env: "WARD_REGISTRY_PASSWORD", Secret: true, Help: "registry password or token"},
	{Key: "manifest_repo", Env: "WARD_MANIFEST_REPO", Flag: "manifest-repo", Help: "Git URL or path of the manifest repo"},
	{Key: "manifest_ssh_key", Env: "WARD_MANIFEST_SSH_KEY", Flag: "manifest-ssh-key", Kind: File, Help: "SSH private key for an ssh:// manifest repo (else ssh-agent)"},
	{Key: "manifest_token", Env: "WARD_MANIFEST_TOKEN", Secret: true, Help: "token for an https:// manifest repo"},
	{Key: "manifest_sign_key", Env: "WARD_MANIFEST_SIGN_KEY", Flag: "manifest-sign-key", Kind: File, Help: "OpenPGP or OpenSSH private key that signs manifest commits"},
	{Key: "manifest_trust", Env: "WARD_MANIFEST_TRUST", Flag: "manifest-trust", Kind: File, Help: "trust file (OpenPGP public keys, SSH allowed signers) pinning who may write the manifest repo, instead of its base/trust.txt"},
	{Key: "signing_key", Env: "WARD_SIGNING_KEY", Flag: "signing-key", Kind: File, Help: "cosign-format private key that signs images"},
	{Key: "signing_password", Env: "WARD_SIGNING_PASSWORD", Secret: true, Help: "password of the signing key (else COSIGN_PASSWORD)"},
	{Key: "verify_key", Env: "WARD_VERIFY_KEY", Flag: "verify-key", Kind: File, Help: "public key that image signatures must verify with"},
	{Key: "agent_webhook_secret", Env: "WARD_AGENT_WEBHOOK_SECRET", Secret: true, Help: "secret that ward agent's refresh webhook (POST /agent/refresh) requires"},
	{Key: "max_rollbacks", Env: "WARD_MAX_ROLLBACKS", Default: "1", Help: "the most hospitals ward feedback --apply rolls back in one run (more at once is an incident)"},
	{Key: "log_format", Env: "WARD_LOG_FORMAT", Flag: "log-format", Default: "auto", Kind: LogFormat, Help: "auto (text on a terminal, else JSON), json or text"},
	{Key: "log_level", Env: "WARD_LOG_LEVEL", Flag: "log-level", Default: "info", Kind: LogLevel, Help: "debug, info, warn or error"},
}

// OtherEnv lists WARD_* variables that are read elsewhere (not settings of
// this package), so that they are not mistaken for typos.
var OtherEnv = map[string]bool{
	"WARD_CONFIG":  true,
	"WARD_MODEL":   true,
	"WARD_VERSION": true,
	// The model server's (serving.Env).
	"WARD_MODEL_DIGEST":   true,
	"WARD_MAX_BATCH":      true,
	"WARD_ID_FIELD":       true,
	"WARD_PREDICTION_LOG": true,
	"WARD_HASH_INPUTS":    true,
	"WARD_HASH_KEY":       true,
	"WARD_HASH_KEY_FILE":  true,
	"WARD_PREDICTIONS_DB": true,
	// tools/ci/stage's.
	"WARD_BIN":      true,
	"WARD_MODELS":   true,
	"WARD_FEEDBACK": true,
	"WARD_SITE":     true,
}

// Source says where a value came from.
type Source struct {
	Kind string // flag, env, file, default
	Name string // --database, WARD_DATABASE, ward.yaml:3
}

func (s Source) String() string {
	if s.Kind == "default" || s.Name == "" {
		return s.Kind
	}
	return s.Kind + " " + s.Name
}

// Value is one resolved setting.
type Value struct {
	Value  string
	Source Source
}

// Config is the resolved configuration.
type Config struct {
	values map[string]Value
}

// Get returns a setting's value ("" when unset).
func (c *Config) Get(key string) string { return c.values[key].Value }

// Source returns where a setting's value came from.
func (c *Config) Source(key string) Source { return c.values[key].Source }

// Set overrides a value; tests and the demo wiring use it.
func (c *Config) Set(key, value string) {
	c.values[key] = Value{Value: value, Source: Source{Kind: "set", Name: "by ward"}}
}

// Named accessors, for the settings that code reads most.
func (c *Config) Database() string     { return c.Get("database") }
func (c *Config) Staging() string      { return c.Get("staging") }
func (c *Config) Hospitals() string    { return c.Get("hospitals") }
func (c *Config) SFTP() string         { return c.Get("sftp") }
func (c *Config) Registry() string     { return c.Get("registry") }
func (c *Config) ManifestRepo() string { return c.Get("manifest_repo") }
func (c *Config) InsecureRegistry() bool {
	b, _ := strconv.ParseBool(c.Get("insecure_registry"))
	return b
}

// Error is a bad setting: it names the key and where its value came from.
type Error struct {
	Key    string
	Source Source
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("config %s (from %s): %s", e.Key, e.Source, e.Reason)
}

// Flags holds the global flags bound to a FlagSet.
type Flags struct {
	fs     *flag.FlagSet
	values map[string]*string
	bools  map[string]*bool
	file   *string
}

// BindFlags registers the settings' flags and --config on fs. A command
// that defines a flag of the same name first keeps its own meaning for it
// (ward synth --hospitals N); the setting then comes from env or file.
func BindFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{fs: fs, values: map[string]*string{}, bools: map[string]*bool{}}
	f.file = fs.String("config", "", "configuration file (default ward.yaml when present; env WARD_CONFIG)")
	for _, s := range Settings {
		if s.Flag == "" || fs.Lookup(s.Flag) != nil {
			continue
		}
		if s.Kind == Bool {
			f.bools[s.Key] = fs.Bool(s.Flag, false, s.Help+" (env "+s.Env+")")
			continue
		}
		f.values[s.Key] = fs.String(s.Flag, "", s.Help+" (env "+s.Env+")")
	}
	return f
}

// set returns the flags given on the command line.
func (f *Flags) set() map[string]string {
	out := map[string]string{}
	if f == nil {
		return out
	}
	given := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	for _, s := range Settings {
		if s.Flag == "" || !given[s.Flag] {
			continue
		}
		if b, ok := f.bools[s.Key]; ok {
			out[s.Key] = strconv.FormatBool(*b)
		} else if v, ok := f.values[s.Key]; ok {
			out[s.Key] = *v
		}
	}
	return out
}

// Load resolves the configuration from the flags (may be nil), the
// environment (getenv, usually os.LookupEnv via Environ) and the file.
func Load(f *Flags, environ []string) (*Config, error) {
	env := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	c := &Config{values: map[string]Value{}}
	for _, s := range Settings {
		c.values[s.Key] = Value{Value: s.Default, Source: Source{Kind: "default"}}
	}

	file, fileSrc := "", Source{}
	switch {
	case f != nil && *f.file != "":
		file, fileSrc = *f.file, Source{Kind: "flag", Name: "--config"}
	case env["WARD_CONFIG"] != "":
		file, fileSrc = env["WARD_CONFIG"], Source{Kind: "env", Name: "WARD_CONFIG"}
	default:
		if _, err := os.Stat("ward.yaml"); err == nil {
			file = "ward.yaml"
		}
	}
	if file != "" {
		if err := c.loadFile(file, fileSrc); err != nil {
			return nil, err
		}
	}

	byEnv := map[string]Setting{}
	for _, s := range Settings {
		byEnv[s.Env] = s
	}
	var unknown []string
	for k, v := range env {
		// WARD_TEST_* belong to the test harness (WARD_TEST_POSTGRES,
		// WARD_TEST_COSIGN), which tools/dev/test exports to every test.
		if !strings.HasPrefix(k, "WARD_") || strings.HasPrefix(k, "WARD_TEST_") || OtherEnv[k] {
			continue
		}
		s, ok := byEnv[k]
		if !ok {
			unknown = append(unknown, k)
			continue
		}
		if v == "" {
			continue
		}
		c.values[s.Key] = Value{Value: v, Source: Source{Kind: "env", Name: k}}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		k := unknown[0]
		return nil, &Error{Key: k, Source: Source{Kind: "the environment"}, Reason: "unknown setting" + suggest(k, envNames())}
	}

	for key, v := range f.set() {
		c.values[key] = Value{Value: v, Source: Source{Kind: "flag", Name: "--" + settingByKey(key).Flag}}
	}

	for _, s := range Settings {
		if err := c.check(s); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Config) loadFile(file string, src Source) error {
	data, err := os.ReadFile(file)
	if err != nil {
		if src.Kind == "" {
			src = Source{Kind: "file", Name: file}
		}
		return &Error{Key: "config", Source: src, Reason: fmt.Sprintf("cannot read %s: %v", file, errors.Unwrap(err))}
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if err.Error() == "EOF" {
			return nil
		}
		return &Error{Key: "config", Source: Source{Kind: "file", Name: file}, Reason: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return &Error{Key: "config", Source: Source{Kind: "file", Name: fmt.Sprintf("%s:%d", file, root.Line)}, Reason: "want a mapping of settings (key: value)"}
	}
	keys := make([]string, len(Settings))
	for i, s := range Settings {
		keys[i] = s.Key
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		src := Source{Kind: "file", Name: fmt.Sprintf("%s:%d", file, k.Line)}
		s, ok := settingOK(k.Value)
		if !ok {
			return &Error{Key: k.Value, Source: src, Reason: "unknown setting" + suggest(k.Value, keys)}
		}
		if v.Kind != yaml.ScalarNode {
			return &Error{Key: s.Key, Source: src, Reason: "want a single value"}
		}
		c.values[s.Key] = Value{Value: v.Value, Source: src}
	}
	return nil
}

func settingOK(key string) (Setting, bool) {
	for _, s := range Settings {
		if s.Key == key {
			return s, true
		}
	}
	return Setting{}, false
}

func settingByKey(key string) Setting {
	s, _ := settingOK(key)
	return s
}

func envNames() []string {
	out := make([]string, len(Settings))
	for i, s := range Settings {
		out[i] = s.Env
	}
	return out
}

// suggest names the closest known key, for typos.
func suggest(key string, known []string) string {
	best, bestD := "", 4
	for _, k := range known {
		if d := distance(strings.ToLower(key), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return "; did you mean " + best + "?"
}

// distance is the Levenshtein distance.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (c *Config) check(s Setting) error {
	v := c.values[s.Key]
	if v.Value == "" {
		return nil
	}
	fail := func(format string, args ...any) error {
		return &Error{Key: s.Key, Source: v.Source, Reason: fmt.Sprintf(format, args...)}
	}
	switch s.Kind {
	case Bool:
		if _, err := strconv.ParseBool(v.Value); err != nil {
			return fail("%q is not true or false", v.Value)
		}
	case File:
		st, err := os.Stat(v.Value)
		if err != nil {
			return fail("file %s does not exist or cannot be read", v.Value)
		}
		if st.IsDir() {
			return fail("%s is a folder, want a file", v.Value)
		}
	case Database:
		if _, err := ParseDatabase(v.Value); err != nil {
			return fail("%v", err)
		}
	case SFTP:
		if _, err := ParseSFTP(v.Value); err != nil {
			return fail("%v", err)
		}
	case Registry:
		if _, err := ParseRegistry(v.Value); err != nil {
			return fail("%v", err)
		}
	case LogFormat:
		if v.Value != "auto" && v.Value != "json" && v.Value != "text" {
			return fail("%q: want auto, json or text", v.Value)
		}
	case LogLevel:
		switch v.Value {
		case "debug", "info", "warn", "error":
		default:
			return fail("%q: want debug, info, warn or error", v.Value)
		}
	}
	return nil
}

// DB is a parsed WARD_DATABASE.
type DB struct {
	Driver string // sqlite or postgres
	// DSN is the SQLite file path, or the PostgreSQL URL.
	DSN string
}

// ParseDatabase reads sqlite:PATH or a postgres:// (postgresql://) URL.
func ParseDatabase(s string) (DB, error) {
	if p, ok := strings.CutPrefix(s, "sqlite:"); ok {
		if p == "" {
			return DB{}, errors.New("sqlite: needs a file path, e.g. sqlite:.ward/ward.db")
		}
		return DB{Driver: "sqlite", DSN: p}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return DB{}, fmt.Errorf("not a URL: %v", redactErr(err))
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return DB{}, fmt.Errorf("%q: want sqlite:PATH or a postgres:// URL", Redact(s))
	}
	if u.Host == "" && u.Query().Get("host") == "" {
		return DB{}, fmt.Errorf("%q: no host", Redact(s))
	}
	return DB{Driver: "postgres", DSN: s}, nil
}

// SFTPURL is a parsed WARD_SFTP.
type SFTPURL struct {
	User string
	Host string // host:port
	Base string // base path on the server
}

// ParseSFTP reads sftp://user@host:port/base/path.
func ParseSFTP(s string) (SFTPURL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return SFTPURL{}, fmt.Errorf("not a URL: %v", redactErr(err))
	}
	if u.Scheme != "sftp" {
		return SFTPURL{}, fmt.Errorf("%q: want sftp://user@host:port/base/path", s)
	}
	if u.User == nil || u.User.Username() == "" {
		return SFTPURL{}, fmt.Errorf("%q: no user (want sftp://user@host:port/base/path)", s)
	}
	if _, pass := u.User.Password(); pass {
		return SFTPURL{}, errors.New("a password in the URL is not supported: use WARD_SFTP_KEY")
	}
	if u.Hostname() == "" {
		return SFTPURL{}, fmt.Errorf("%q: no host", s)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "22")
	} else if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
		return SFTPURL{}, fmt.Errorf("%q: bad port %q", s, u.Port())
	}
	base := u.Path
	if base == "" {
		base = "/"
	}
	return SFTPURL{User: u.User.Username(), Host: host, Base: base}, nil
}

// RegistryRef is a parsed WARD_REGISTRY.
type RegistryRef struct {
	Host   string // host[:port]
	Prefix string // path prefix, without slashes at the ends
}

// ParseRegistry reads host[:port][/prefix].
func ParseRegistry(s string) (RegistryRef, error) {
	if strings.Contains(s, "://") {
		return RegistryRef{}, fmt.Errorf("%q: want host[:port][/prefix], without a scheme", s)
	}
	host, prefix, _ := strings.Cut(s, "/")
	if host == "" {
		return RegistryRef{}, fmt.Errorf("%q: no host", s)
	}
	if h, p, err := net.SplitHostPort(host); err == nil {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 || h == "" {
			return RegistryRef{}, fmt.Errorf("%q: bad port %q", s, p)
		}
	} else if strings.Contains(host, ":") {
		return RegistryRef{}, fmt.Errorf("%q: bad host:port", s)
	}
	prefix = strings.Trim(prefix, "/")
	for _, part := range strings.Split(prefix, "/") {
		if prefix != "" && (part == "" || strings.ToLower(part) != part) {
			return RegistryRef{}, fmt.Errorf("%q: bad path prefix %q (want lower-case components)", s, prefix)
		}
	}
	return RegistryRef{Host: host, Prefix: prefix}, nil
}

// IsLoopback reports whether a registry host (host[:port]) is on loopback,
// where plain HTTP is allowed without WARD_INSECURE_REGISTRY.
func IsLoopback(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Redact hides the secrets of every URL in s, which may be one URL (a
// setting) or a text that holds some (an error, a log line, a status
// document): the password of a URL's user part (user:pw@), the user part of
// an http(s) URL that has no password (https://TOKEN@host: a token in the
// user name), and the value of a query or connection parameter named for a
// secret (password=, sslpassword=, token=, ...), also in a PostgreSQL
// keyword/value string. It is the one redaction of ward: ward config, the
// loggers, the CLI's errors and the agent's status apply it at their edge.
func Redact(s string) string {
	s = urlUserinfo.ReplaceAllStringFunc(s, func(m string) string {
		sub := urlUserinfo.FindStringSubmatch(m)
		scheme, userinfo := sub[1], sub[2]
		if user, _, ok := strings.Cut(userinfo, ":"); ok {
			return scheme + "://" + user + ":REDACTED@"
		}
		if l := strings.ToLower(scheme); l == "http" || l == "https" {
			return scheme + "://REDACTED@"
		}
		return m
	})
	return secretParam.ReplaceAllString(s, "${1}=REDACTED")
}

var (
	// urlUserinfo is a URL's scheme and user part: up to the last @ before
	// the host (a password may hold an unescaped @).
	urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*)://([^/\s"'<>@]*(?:@[^/\s"'<>@]*)*)@`)
	// secretParam is a parameter whose name says it is a secret.
	secretParam = regexp.MustCompile(`(?i)\b([a-z_]*(?:password|passphrase|passwd|secret|token))=([^\s&;'"]*)`)
)

func redactErr(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// Entry is one line of `ward config`.
type Entry struct {
	Key    string `json:"key"`
	Env    string `json:"env"`
	Value  string `json:"value"`
	Source string `json:"source"`
}

// Entries returns every setting with its value (secrets redacted) and its
// source.
func (c *Config) Entries() []Entry {
	out := make([]Entry, 0, len(Settings))
	for _, s := range Settings {
		v := c.values[s.Key]
		val := v.Value
		switch {
		case val == "":
		case s.Secret:
			val = "REDACTED"
		default:
			val = Redact(val)
		}
		out = append(out, Entry{Key: s.Key, Env: s.Env, Value: val, Source: v.Source.String()})
	}
	return out
}
