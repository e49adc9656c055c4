package serving

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/wardml/ward/models/trained"
)

// Config is the server's settings. Both `ward serve` and the ward-serve
// binary read them with BindFlags and Flags.Config: a flag first, then its
// environment variable, then the default.
type Config struct {
	// Model is the artifact file (--model, WARD_MODEL).
	Model string
	// Listen is the address to listen on (--listen, PORT: a bare port
	// number means every interface).
	Listen string
	// Digest names the model the server starts with, as the agent or the
	// Kubernetes manifest knows it (the image digest, WARD_MODEL_DIGEST).
	// It holds for that artifact only: a model swapped in later is named
	// by the SHA-256 of its file. Empty: the file's SHA-256 from the start.
	Digest string
	// MaxBatch is the most instances one request may hold (--max-batch,
	// WARD_MAX_BATCH).
	MaxBatch int
	// MaxBody is the largest request body in bytes (--max-body).
	MaxBody int64
	// MaxInFlight bounds the predictions decoded and computed at once
	// (--max-in-flight, default the number of cores): a request beyond it
	// waits up to QueueWait (--queue-wait) for a turn, then gets a 503
	// with Retry-After. So a flood of large bodies costs queued
	// connections, not memory.
	MaxInFlight int
	QueueWait   time.Duration
	// IDField is the request field that carries the case id, the
	// contract's training.id (--id-field, WARD_ID_FIELD). It is not a
	// model input: it goes into the prediction log for feedback to join
	// predictions with outcomes.
	IDField string
	// PredictionLog is a file that receives the prediction log besides
	// stdout, rotated at LogMaxSize bytes, LogKeep rotated files kept
	// (--prediction-log, WARD_PREDICTION_LOG).
	PredictionLog string
	LogMaxSize    int64
	LogKeep       int
	// HashKey, when set, replaces the inputs in the prediction log with
	// their HMAC-SHA256 under this key (--hash-inputs with WARD_HASH_KEY,
	// or the key in --hash-key-file / WARD_HASH_KEY_FILE).
	HashKey []byte
	// PredictionsDB is a postgres:// URL whose ward_predictions table
	// receives every prediction in batches (--predictions-db,
	// WARD_PREDICTIONS_DB). Empty: the prediction log only.
	PredictionsDB string
	// Watch is how often the model file is checked for a new version;
	// 0 turns the watch off (SIGHUP still reloads).
	Watch time.Duration
	// ReadTimeout and WriteTimeout bound a request's reading and its
	// answer's writing, so that a slow client cannot hold a connection.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	// ShutdownDelay is how long the server stays up, not ready, after
	// SIGTERM before it stops accepting connections: the time a load
	// balancer takes to see /readyz fail. DrainTimeout bounds the wait
	// for the requests in flight after that.
	ShutdownDelay time.Duration
	DrainTimeout  time.Duration
}

// Defaults of the settings.
const (
	DefaultModel    = "/models/model.json"
	DefaultListen   = ":8080"
	DefaultMaxBatch = 100
	DefaultMaxBody  = 1 << 20
	DefaultIDField  = "case_id"
	// The timeouts of a connection: reading a request, writing its
	// answer, waiting for the next one. The agent's front endpoint uses
	// the same.
	DefaultReadTimeout  = trained.ServerReadTimeout
	DefaultWriteTimeout = trained.ServerWriteTimeout
	DefaultIdleTimeout  = trained.ServerIdleTimeout
	DefaultQueueWait    = time.Second
)

// Env lists the environment variables the server reads (trained.ServerEnv,
// which the agent passes on to the servers it starts). ward's own
// configuration knows them, so that it does not take them for typos.
var Env = trained.ServerEnv

// Flags are the server's command-line flags, bound to a flag set.
type Flags struct {
	fs                         *flag.FlagSet
	model, listen, idField     *string
	predLog, hashKeyFile, db   *string
	maxBatch, logKeep, flight  *int
	maxBody, logMaxSize        *int64
	hashInputs                 *bool
	watch, readT, writeT, idle *time.Duration
	queueWait                  *time.Duration
	shutdownDelay, drain       *time.Duration
}

// BindFlags registers the server's flags on fs.
func BindFlags(fs *flag.FlagSet) *Flags {
	return &Flags{
		fs:            fs,
		model:         fs.String("model", DefaultModel, "model artifact file (env WARD_MODEL)"),
		listen:        fs.String("listen", DefaultListen, "address to listen on (env PORT)"),
		idField:       fs.String("id-field", DefaultIDField, "request field holding the case id, logged for feedback (env WARD_ID_FIELD)"),
		maxBatch:      fs.Int("max-batch", DefaultMaxBatch, "most instances per request (env WARD_MAX_BATCH)"),
		maxBody:       fs.Int64("max-body", DefaultMaxBody, "largest request body in bytes"),
		flight:        fs.Int("max-in-flight", runtime.GOMAXPROCS(0), "most predictions decoded and computed at once (default: the cores)"),
		queueWait:     fs.Duration("queue-wait", DefaultQueueWait, "longest wait of a request beyond --max-in-flight before a 503 with Retry-After"),
		predLog:       fs.String("prediction-log", "", "also write the prediction log to this file, rotated (env WARD_PREDICTION_LOG)"),
		logMaxSize:    fs.Int64("prediction-log-size", 100<<20, "rotate the prediction log file at this many bytes"),
		logKeep:       fs.Int("prediction-log-keep", 10, "rotated prediction log files to keep"),
		hashInputs:    fs.Bool("hash-inputs", false, "log an HMAC-SHA256 of the inputs instead of the inputs (env WARD_HASH_INPUTS; key in WARD_HASH_KEY)"),
		hashKeyFile:   fs.String("hash-key-file", "", "file holding the key of --hash-inputs (env WARD_HASH_KEY_FILE)"),
		db:            fs.String("predictions-db", "", "postgres:// URL whose ward_predictions table receives every prediction (env WARD_PREDICTIONS_DB)"),
		watch:         fs.Duration("watch", time.Second, "how often to check the model file for a new version (0: only on SIGHUP)"),
		readT:         fs.Duration("read-timeout", DefaultReadTimeout, "longest time to read a request"),
		writeT:        fs.Duration("write-timeout", DefaultWriteTimeout, "longest time to answer a request"),
		idle:          fs.Duration("idle-timeout", DefaultIdleTimeout, "longest time a keep-alive connection waits for the next request"),
		shutdownDelay: fs.Duration("shutdown-delay", 0, "after SIGTERM, stay up not ready this long before closing the listener"),
		drain:         fs.Duration("drain-timeout", 30*time.Second, "after SIGTERM, longest wait for the requests in flight"),
	}
}

// Config resolves the settings: a flag given on the command line wins,
// then the environment (lookup, usually os.LookupEnv), then the default.
func (f *Flags) Config(lookup func(string) (string, bool)) (Config, error) {
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	env := func(flagName, name string) (string, bool) {
		if set[flagName] {
			return "", false
		}
		v, ok := lookup(name)
		return v, ok && v != ""
	}
	c := Config{
		Model: *f.model, Listen: *f.listen, IDField: *f.idField, MaxBatch: *f.maxBatch, MaxBody: *f.maxBody,
		MaxInFlight: *f.flight, QueueWait: *f.queueWait,
		PredictionLog: *f.predLog, LogMaxSize: *f.logMaxSize, LogKeep: *f.logKeep, PredictionsDB: *f.db,
		Watch: *f.watch, ReadTimeout: *f.readT, WriteTimeout: *f.writeT, IdleTimeout: *f.idle,
		ShutdownDelay: *f.shutdownDelay, DrainTimeout: *f.drain,
	}
	var errs []error
	if v, ok := env("model", "WARD_MODEL"); ok {
		c.Model = v
	}
	if v, ok := env("listen", "PORT"); ok {
		c.Listen = v
		if _, err := strconv.Atoi(v); err == nil {
			c.Listen = ":" + v
		}
	}
	if v, ok := lookup("WARD_MODEL_DIGEST"); ok {
		c.Digest = v
	}
	if v, ok := env("id-field", "WARD_ID_FIELD"); ok {
		c.IDField = v
	}
	if v, ok := env("max-batch", "WARD_MAX_BATCH"); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("WARD_MAX_BATCH %q: not a whole number", v))
		}
		c.MaxBatch = n
	}
	if v, ok := env("prediction-log", "WARD_PREDICTION_LOG"); ok {
		c.PredictionLog = v
	}
	if v, ok := env("predictions-db", "WARD_PREDICTIONS_DB"); ok {
		c.PredictionsDB = v
	}
	hash := *f.hashInputs
	if v, ok := env("hash-inputs", "WARD_HASH_INPUTS"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("WARD_HASH_INPUTS %q: want true or false", v))
		}
		hash = b
	}
	keyFile := *f.hashKeyFile
	if v, ok := env("hash-key-file", "WARD_HASH_KEY_FILE"); ok {
		keyFile = v
	}
	if hash {
		key, err := hashKey(keyFile, lookup)
		if err != nil {
			errs = append(errs, err)
		}
		c.HashKey = key
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return c, c.check()
}

// minKeyLen is the shortest HMAC key accepted: shorter keys make the hash
// of a small set of inputs easy to reverse by trying them all.
const minKeyLen = 16

func hashKey(file string, lookup func(string) (string, bool)) ([]byte, error) {
	var key []byte
	src := "WARD_HASH_KEY"
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--hash-key-file: %w", err)
		}
		key, src = []byte(strings.TrimRight(string(data), "\r\n")), "--hash-key-file "+file
	} else if v, ok := lookup("WARD_HASH_KEY"); ok {
		key = []byte(v)
	}
	switch {
	case len(key) == 0:
		return nil, errors.New("--hash-inputs needs a key: set WARD_HASH_KEY or --hash-key-file")
	case len(key) < minKeyLen:
		return nil, fmt.Errorf("hash key from %s: %d bytes, want at least %d", src, len(key), minKeyLen)
	}
	return key, nil
}

func (c *Config) check() error {
	var errs []error
	if c.Model == "" {
		errs = append(errs, errors.New("--model: no model file given"))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: want host:port or :port (%v)", c.Listen, err))
	}
	if c.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("--max-batch %d: want at least 1", c.MaxBatch))
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("--max-in-flight %d: want at least 1", c.MaxInFlight))
	}
	if c.QueueWait < 0 {
		errs = append(errs, fmt.Errorf("--queue-wait %s: negative", c.QueueWait))
	}
	if c.MaxBody < 1024 {
		errs = append(errs, fmt.Errorf("--max-body %d: want at least 1024 bytes", c.MaxBody))
	}
	if c.IDField == "" {
		errs = append(errs, errors.New("--id-field: empty"))
	}
	if c.PredictionLog != "" && (c.LogMaxSize < 4096 || c.LogKeep < 1) {
		errs = append(errs, fmt.Errorf("--prediction-log-size %d, --prediction-log-keep %d: want at least 4096 bytes and 1 file", c.LogMaxSize, c.LogKeep))
	}
	if c.PredictionsDB != "" && !strings.HasPrefix(c.PredictionsDB, "postgres://") && !strings.HasPrefix(c.PredictionsDB, "postgresql://") {
		errs = append(errs, errors.New("--predictions-db: want a postgres:// URL"))
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"--watch", c.Watch}, {"--shutdown-delay", c.ShutdownDelay}} {
		if d.d < 0 {
			errs = append(errs, fmt.Errorf("%s %s: negative", d.name, d.d))
		}
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"--read-timeout", c.ReadTimeout}, {"--write-timeout", c.WriteTimeout}, {"--idle-timeout", c.IdleTimeout}, {"--drain-timeout", c.DrainTimeout}} {
		if d.d <= 0 {
			errs = append(errs, fmt.Errorf("%s %s: want a positive duration", d.name, d.d))
		}
	}
	return errors.Join(errs...)
}
