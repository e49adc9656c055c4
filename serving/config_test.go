package serving_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	wardconfig "github.com/wardml/ward/internal/config"
	"github.com/wardml/ward/serving"
)

func resolve(args []string, env map[string]string) (serving.Config, error) {
	fs := flag.NewFlagSet("ward-serve", flag.ContinueOnError)
	flags := serving.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return serving.Config{}, err
	}
	return flags.Config(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
}

func TestConfigFlagsThenEnvThenDefaults(t *testing.T) {
	cfg, err := resolve(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Model != "/models/model.json" || cfg.Listen != ":8080" || cfg.MaxBatch != 100 || cfg.IDField != "case_id" || cfg.HashKey != nil || cfg.Digest != "" {
		t.Errorf("defaults: %+v", cfg)
	}
	env := map[string]string{"WARD_MODEL": "/env/model.json", "PORT": "9000", "WARD_MAX_BATCH": "7", "WARD_MODEL_DIGEST": "sha256:abc",
		"WARD_ID_FIELD": "record_id", "WARD_PREDICTION_LOG": "/var/log/p.jsonl", "WARD_PREDICTIONS_DB": "postgres://db/ward"}
	cfg, err = resolve(nil, env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Model != "/env/model.json" || cfg.Listen != ":9000" || cfg.MaxBatch != 7 || cfg.Digest != "sha256:abc" || cfg.IDField != "record_id" ||
		cfg.PredictionLog != "/var/log/p.jsonl" || cfg.PredictionsDB != "postgres://db/ward" {
		t.Errorf("from the environment: %+v", cfg)
	}
	cfg, err = resolve([]string{"--model", "/flag/m.json", "--listen", "127.0.0.1:81", "--max-batch", "3"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Model != "/flag/m.json" || cfg.Listen != "127.0.0.1:81" || cfg.MaxBatch != 3 {
		t.Errorf("flags must win: %+v", cfg)
	}
}

func TestConfigRefusesBadSettings(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte("a-key-long-enough-for-hmac\n"), 0o600)
	if cfg, err := resolve([]string{"--hash-inputs", "--hash-key-file", keyFile}, nil); err != nil || string(cfg.HashKey) != "a-key-long-enough-for-hmac" {
		t.Errorf("key from a file: %q %v", cfg.HashKey, err)
	}
	if cfg, err := resolve(nil, map[string]string{"WARD_HASH_INPUTS": "true", "WARD_HASH_KEY": "0123456789abcdef"}); err != nil || string(cfg.HashKey) != "0123456789abcdef" {
		t.Errorf("key from the environment: %q %v", cfg.HashKey, err)
	}
	for _, c := range []struct {
		args []string
		env  map[string]string
		msg  string
	}{
		{[]string{"--hash-inputs"}, nil, "--hash-inputs needs a key: set WARD_HASH_KEY or --hash-key-file"},
		{nil, map[string]string{"WARD_HASH_INPUTS": "yes please", "WARD_HASH_KEY": "0123456789abcdef"}, `WARD_HASH_INPUTS "yes please": want true or false`},
		{[]string{"--hash-inputs"}, map[string]string{"WARD_HASH_KEY": "short"}, "hash key from WARD_HASH_KEY: 5 bytes, want at least 16"},
		{[]string{"--hash-inputs", "--hash-key-file", "/nonexistent/key"}, nil, "--hash-key-file: open /nonexistent/key"},
		{[]string{"--listen", "8080"}, nil, `--listen "8080": want host:port`},
		{nil, map[string]string{"WARD_MAX_BATCH": "many"}, `WARD_MAX_BATCH "many": not a whole number`},
		{[]string{"--max-batch", "0"}, nil, "--max-batch 0: want at least 1"},
		{[]string{"--predictions-db", "mysql://x"}, nil, "--predictions-db: want a postgres:// URL"},
		{[]string{"--read-timeout", "0s"}, nil, "--read-timeout 0s: want a positive duration"},
		{[]string{"--model", ""}, nil, "--model: no model file given"},
	} {
		_, err := resolve(c.args, c.env)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v %v: error %v, want %q", c.args, c.env, err, c.msg)
		}
	}
}

// ward's configuration refuses WARD_* variables it does not know (typos):
// it must know the server's.
func TestWardConfigKnowsTheServersVariables(t *testing.T) {
	for _, name := range serving.Env {
		if !strings.HasPrefix(name, "WARD_") {
			continue
		}
		if !wardconfig.OtherEnv[name] {
			t.Errorf("%s is read by the server but not in config.OtherEnv: `ward serve` would refuse it as a typo", name)
		}
		if _, err := wardconfig.Load(nil, []string{name + "=x"}); err != nil {
			t.Errorf("config.Load with %s set: %v", name, err)
		}
	}
}
