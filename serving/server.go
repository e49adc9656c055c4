// Package serving is the model server that goes into every image (the
// static binary serving/cmd/ward-serve, also `ward serve`): it loads a
// hospital's model artifact, validates every request against the model's
// own input schema, predicts with the same models/ code that training used
// (so no train/serve skew), logs every prediction, and swaps in a new
// model file without dropping a request. In the loop it sits between the
// agent, which puts the model in place, and feedback, which joins the
// predictions it logged with the outcomes that later extracts bring.
//
// # API
//
//	POST /v1/predict  one case as a JSON object, or {"instances": [...]}
//	GET  /v1/model    metadata, metrics and input schema (ModelInfo)
//	GET  /healthz     200 while the process runs
//	GET  /readyz      200 while a model is loaded and the server is not draining
//	GET  /metrics     Prometheus metrics
//
// A bad request gets a 400 (413 for a body over --max-body) whose JSON
// body names every bad field and why:
//
//	{"error": "2 invalid fields; nothing was predicted", "request_id": "...",
//	 "fields": [{"field": "age", "value": "\"forty\"", "reason": "wrong type: want a number"}, ...]}
//
// # Prediction log
//
// Every prediction is one JSON line on stdout, and in the --prediction-log
// file when set (rotated by size: the live file, plus rotated files named
// STEM_YYYYMMDDThhmmss.sssZ.EXT that are complete and never written
// again). These lines are what hospitals drop on SFTP and what ingest
// loads into the ward_predictions table for feedback, so their format is
// a contract, defined once in models/predlog (its package documentation
// lists the fields): one line per instance of a request.
//
// A prediction is keyed by (hospital, the server's own id of the request,
// item); the client's X-Request-Id is kept beside it for tracing, so a
// client that reuses one loses no prediction. With
// --predictions-db the same predictions are also written to that table in
// batches; the log stays the record of last resort, and a prediction
// loaded twice is counted once.
package serving

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/models/predlog"
)

// ServiceName is the ECS service.name of the server's logs.
const ServiceName = predlog.ServiceName

// Server serves one hospital's model.
type Server struct {
	cfg     Config
	log     *slog.Logger
	stdout  io.Writer
	model   atomic.Pointer[model]
	ready   atomic.Bool
	metrics *metrics
	plog    *predLog
	db      *dbSink
	handler http.Handler
	scratch sync.Pool
	// slots holds a token for each prediction in flight (cfg.MaxInFlight).
	slots chan struct{}

	// reload serialises loads (SIGHUP and the watch); file is the state
	// of the model file at the last look.
	reload sync.Mutex
	file   fileState
	// startSHA is the file SHA-256 of the model the server started with,
	// the one cfg.Digest names.
	startSHA string

	// idPrefix and seq make request ids: random per process, then a count.
	idPrefix string
	seq      atomic.Uint64

	// lastLogError rate-limits the complaints about a failing log.
	lastLogError atomic.Int64
	closeOnce    sync.Once
}

// Option changes how a Server is wired.
type Option func(*Server)

// WithLogger sets the logger of the server's own events (default: none).
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithStdout sets where the prediction log goes besides the file (default
// os.Stdout).
func WithStdout(w io.Writer) Option { return func(s *Server) { s.stdout = w } }

// New loads the model and readies the server. A model that cannot be read
// or is not a valid artifact is an error: the server does not start.
func New(cfg Config, opts ...Option) (*Server, error) {
	s := &Server{cfg: cfg, log: slog.New(slog.DiscardHandler), stdout: os.Stdout, metrics: newMetrics()}
	for _, o := range opts {
		o(s)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	s.idPrefix = hex.EncodeToString(id[:])
	s.scratch.New = func() any { return new(scratch) }
	if s.cfg.MaxInFlight < 1 {
		s.cfg.MaxInFlight = runtime.GOMAXPROCS(0)
	}
	s.slots = make(chan struct{}, s.cfg.MaxInFlight)

	m, err := loadModel(cfg.Model)
	if err != nil {
		return nil, err
	}
	s.startSHA = m.FileSHA256
	if cfg.Digest != "" {
		m.Digest = cfg.Digest
	}
	if err := m.describe(cfg.IDField, cfg.MaxBatch); err != nil {
		return nil, err
	}
	s.file, _ = statFile(cfg.Model)
	s.metrics.serving(nil, m)
	s.model.Store(m)

	if s.plog, err = newPredLog(s.stdout, cfg, s.logFailed); err != nil {
		return nil, err
	}
	if cfg.PredictionsDB != "" {
		if s.db, err = startDBSink(cfg.PredictionsDB, s.log, s.metrics); err != nil {
			s.plog.close()
			return nil, err
		}
	}
	s.handler = s.routes()
	s.log.Info("model loaded", "path", cfg.Model, "hospital", m.Hospital, "model.version", m.Version, "model.digest", m.Digest)
	return s, nil
}

// logFailed counts a failed write of the prediction log, and says so at
// most every ten seconds: predictions go on.
func (s *Server) logFailed(err error) {
	s.metrics.logErrors.Inc()
	if last := s.lastLogError.Load(); time.Since(time.Unix(last, 0)) > 10*time.Second && s.lastLogError.CompareAndSwap(last, time.Now().Unix()) {
		s.log.Error("prediction log: a write failed; predictions go on (counted in ward_serve_prediction_log_errors_total)", "error", err)
	}
}

// Handler is the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves on ln until ctx is done, then drains: /readyz turns not
// ready at once, the listener stays open for cfg.ShutdownDelay, then
// closes, and the requests in flight finish (for at most
// cfg.DrainTimeout). The model file is checked every cfg.Watch meanwhile.
// Serve closes the prediction log and flushes the database writes before
// it returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	defer s.Close()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	s.ready.Store(true)
	s.log.Info("serving", "url.full", "http://"+ln.Addr().String(), "ward.ready", true)

	watchCtx, stopWatch := context.WithCancel(context.Background())
	var watching sync.WaitGroup
	if s.cfg.Watch > 0 {
		watching.Go(func() { s.watch(watchCtx) })
	}
	defer func() { stopWatch(); watching.Wait() }()

	select {
	case err := <-served:
		s.ready.Store(false)
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	s.ready.Store(false)
	s.log.Info("draining", "ward.shutdown_delay", s.cfg.ShutdownDelay.String(), "ward.drain_timeout", s.cfg.DrainTimeout.String())
	time.Sleep(s.cfg.ShutdownDelay)
	drain, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(drain); err != nil {
		srv.Close()
		return fmt.Errorf("drain: requests still running after %s: %w", s.cfg.DrainTimeout, err)
	}
	<-served
	s.log.Info("stopped")
	return nil
}

// Close closes the prediction log and flushes the database writes. Serve
// calls it; call it only for a Server that is never served.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.db != nil {
			s.db.close(s.cfg.DrainTimeout)
		}
		err = s.plog.close()
	})
	return err
}

// Reload loads the model file again and swaps it in when it is a valid
// artifact of the same hospital and differs from the one serving. A bad
// file is refused and the old model keeps serving. Requests in flight
// finish on the model they started with.
func (s *Server) Reload() (swapped bool, err error) {
	s.reload.Lock()
	defer s.reload.Unlock()
	s.file, _ = statFile(s.cfg.Model)
	return s.load()
}

func (s *Server) load() (bool, error) {
	old := s.model.Load()
	m, err := loadModel(s.cfg.Model)
	if err == nil && m.Hospital != old.Hospital {
		err = fmt.Errorf("model %s: is for hospital %s, and this server serves %s", s.cfg.Model, m.Hospital, old.Hospital)
	}
	if err == nil && m.FileSHA256 == old.FileSHA256 {
		s.metrics.swaps.WithLabelValues("unchanged").Inc()
		s.log.Debug("model unchanged", "path", s.cfg.Model, "model.version", old.Version)
		return false, nil
	}
	if err == nil {
		if m.FileSHA256 == s.startSHA && s.cfg.Digest != "" {
			m.Digest = s.cfg.Digest
		}
		err = m.describe(s.cfg.IDField, s.cfg.MaxBatch)
	}
	if err != nil {
		s.metrics.swaps.WithLabelValues("refused").Inc()
		s.log.Error("new model refused; the old one keeps serving", "error", err, "model.version", old.Version)
		return false, err
	}
	s.metrics.serving(old, m) // before the swap: it readies m's counter
	s.model.Store(m)
	s.metrics.swaps.WithLabelValues("swapped").Inc()
	s.log.Info("model swapped", "path", s.cfg.Model, "hospital", m.Hospital,
		"model.version", m.Version, "model.digest", m.Digest, "model.previous_version", old.Version)
	return true, nil
}

// fileState is what a look at the model file sees; a change in any part
// means the file may hold a new model.
type fileState struct {
	mod   time.Time
	size  int64
	inode uint64
}

func statFile(path string) (fileState, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileState{}, err
	}
	fs := fileState{mod: st.ModTime(), size: st.Size()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		fs.inode = sys.Ino
	}
	return fs, nil
}

// watch looks at the model file every cfg.Watch and loads it when its
// modification time, size or inode changed. A file caught half-written
// fails to decode and changes again when complete, so it is loaded then;
// a rename into place (what the agent does) is never half-written.
func (s *Server) watch(ctx context.Context) {
	t := time.NewTicker(s.cfg.Watch)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := statFile(s.cfg.Model)
		if err != nil {
			continue // between a removal and a rename; the model serving is still fine
		}
		s.reload.Lock()
		if st != s.file {
			s.file = st
			_, _ = s.load()
		}
		s.reload.Unlock()
	}
}

// Run runs the server as ward-serve and `ward serve` do: load the model
// (a bad one is exit code 2), listen on cfg.Listen, reload on SIGHUP, and
// drain and stop when ctx is done (SIGTERM).
func Run(ctx context.Context, cfg Config, opts ...Option) error {
	s, err := New(cfg, opts...)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		s.Close()
		return exit.With(exit.Config, fmt.Errorf("listen %s: %w", cfg.Listen, err))
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-hup:
				_, _ = s.Reload()
			case <-done:
				return
			}
		}
	}()
	return s.Serve(ctx, ln)
}
