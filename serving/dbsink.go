package serving

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wardml/ward/models/predlog"
)

// dbSink writes predictions to PostgreSQL's ward_predictions table (the
// one pipelines/store's migrations create) in batches, off the request
// path: a request only queues its rows. While the database is down the
// batch in hand is retried and new rows wait in the queue; when the queue
// is full, rows are dropped and counted. The prediction log holds every
// prediction either way, and ingest loads it into the same table, where a
// prediction already written is not written twice.
type dbSink struct {
	cfg     *pgx.ConnConfig
	log     *slog.Logger
	metrics *metrics
	queue   chan predlog.Record
	stop    chan time.Time // the deadline of the last flush
	done    chan struct{}
}

const (
	dbQueue     = 1 << 16
	dbBatch     = 500
	dbLinger    = 200 * time.Millisecond
	dbRetryMax  = 30 * time.Second
	dbOpTimeout = 10 * time.Second
)

func startDBSink(url string, log *slog.Logger, m *metrics) (*dbSink, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("--predictions-db: %w", err)
	}
	d := &dbSink{cfg: cfg, log: log, metrics: m, queue: make(chan predlog.Record, dbQueue), stop: make(chan time.Time, 1), done: make(chan struct{})}
	go d.run()
	return d, nil
}

// add queues one prediction, or drops it when the queue is full. Its
// inputs are copied: the request's memory is reused.
func (d *dbSink) add(r *predlog.Record) {
	row := *r
	row.Inputs = bytes.Clone(r.Inputs)
	row.Calibrated, row.Unseen = nil, nil
	select {
	case d.queue <- row:
	default:
		d.metrics.dbRows.WithLabelValues("dropped").Inc()
	}
}

// close writes what is queued, giving up after timeout.
func (d *dbSink) close(timeout time.Duration) {
	d.stop <- time.Now().Add(timeout)
	<-d.done
}

func (d *dbSink) run() {
	defer close(d.done)
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	var deadline time.Time // set once closing
	batch := make([]predlog.Record, 0, dbBatch)
	for {
		// Collect a batch: wait for a first row, then linger a little for
		// more, unless closing, when whatever is queued is taken.
		if deadline.IsZero() {
			select {
			case row := <-d.queue:
				batch = append(batch, row)
			case deadline = <-d.stop:
			}
		}
		linger := time.After(dbLinger)
	fill:
		for len(batch) < dbBatch {
			if !deadline.IsZero() {
				select {
				case row := <-d.queue:
					batch = append(batch, row)
					continue
				default:
					break fill
				}
			}
			select {
			case row := <-d.queue:
				batch = append(batch, row)
			case <-linger:
				break fill
			case deadline = <-d.stop:
			}
		}
		if len(batch) == 0 {
			return // closing, and nothing is left
		}
		for wait := 250 * time.Millisecond; ; wait = min(2*wait, dbRetryMax) {
			var err error
			if conn, err = d.write(conn, batch); err == nil {
				d.metrics.dbRows.WithLabelValues("written").Add(float64(len(batch)))
				break
			}
			d.metrics.dbErrors.Inc()
			if !deadline.IsZero() && time.Now().Add(wait).After(deadline) {
				d.log.Error("predictions db: giving up at shutdown; the prediction log holds these predictions", "error", err, "ward.dropped", len(batch)+len(d.queue))
				d.metrics.dbRows.WithLabelValues("dropped").Add(float64(len(batch) + len(d.queue)))
				return
			}
			d.log.Warn("predictions db: writing a batch failed; retrying", "error", err, "ward.rows", len(batch), "ward.retry_in", wait.String())
			select {
			case <-time.After(wait):
			case deadline = <-d.stop:
			}
		}
		batch = batch[:0]
	}
}

// write inserts a batch in one statement (predlog.Insert), connecting
// first when needed. A failure closes the connection, so the next try
// starts afresh.
func (d *dbSink) write(conn *pgx.Conn, batch []predlog.Record) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dbOpTimeout)
	defer cancel()
	if conn == nil {
		var err error
		if conn, err = pgx.ConnectConfig(ctx, d.cfg); err != nil {
			return nil, err
		}
	}
	// Not prepared: a statement per batch size would pile up on the server.
	args := append(make([]any, 0, 1+len(batch)*len(predlog.Columns)), pgx.QueryExecModeExec)
	for i := range batch {
		args = batch[i].Values(args, func(t time.Time) any { return t })
	}
	if _, err := conn.Exec(ctx, predlog.Insert(len(batch)), args...); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("insert into %s: %w", predlog.Table, err)
	}
	return conn, nil
}
