package serving

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
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
	queue   chan dbRow
	stop    chan time.Time // the deadline of the last flush
	done    chan struct{}
}

type dbRow struct {
	hospital, requestID string
	item                int64
	caseID              pgtype.Text
	version, digest     string
	inputs, inputsHash  pgtype.Text
	prediction          float64
	at                  time.Time
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
	d := &dbSink{cfg: cfg, log: log, metrics: m, queue: make(chan dbRow, dbQueue), stop: make(chan time.Time, 1), done: make(chan struct{})}
	go d.run()
	return d, nil
}

// add queues one prediction, or drops it when the queue is full.
func (d *dbSink) add(m *model, r *record, at time.Time) {
	row := dbRow{
		hospital: m.Hospital, requestID: r.RequestID, item: int64(r.Item),
		caseID:  pgtype.Text{String: r.CaseID, Valid: r.CaseID != ""},
		version: m.Version, digest: m.Digest,
		inputs:     pgtype.Text{String: string(r.Inputs), Valid: r.Inputs != nil},
		inputsHash: pgtype.Text{String: r.InputsHash, Valid: r.InputsHash != ""},
		prediction: r.Prediction.Value, at: at,
	}
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
	batch := make([]dbRow, 0, dbBatch)
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

const insertPredictions = `INSERT INTO ward_predictions
	(hospital, request_id, item, case_id, model_version, model_digest, inputs, inputs_hash, prediction, predicted_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::float8[], $10::timestamptz[])
ON CONFLICT (hospital, request_id, item) DO NOTHING`

// write inserts a batch in one statement, connecting first when needed. A
// failure closes the connection, so the next try starts afresh.
func (d *dbSink) write(conn *pgx.Conn, batch []dbRow) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dbOpTimeout)
	defer cancel()
	if conn == nil {
		var err error
		if conn, err = pgx.ConnectConfig(ctx, d.cfg); err != nil {
			return nil, err
		}
	}
	n := len(batch)
	var (
		hospital, reqID, version, digest = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		item                             = make([]int64, n)
		caseID, inputs, hash             = make([]pgtype.Text, n), make([]pgtype.Text, n), make([]pgtype.Text, n)
		pred                             = make([]float64, n)
		at                               = make([]time.Time, n)
	)
	for i, r := range batch {
		hospital[i], reqID[i], item[i], caseID[i] = r.hospital, r.requestID, r.item, r.caseID
		version[i], digest[i], inputs[i], hash[i], pred[i], at[i] = r.version, r.digest, r.inputs, r.inputsHash, r.prediction, r.at
	}
	if _, err := conn.Exec(ctx, insertPredictions, hospital, reqID, item, caseID, version, digest, inputs, hash, pred, at); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("insert into ward_predictions: %w", err)
	}
	return conn, nil
}
