package serving

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Label values of the fields that are not a model's inputs, so that a
// client sending made-up field names cannot grow the metrics.
const (
	unknownField = "(unknown)"
	bodyField    = "(body)"
	headerField  = "(header)"
)

// metrics are the server's Prometheus metrics, on a registry of its own.
type metrics struct {
	reg *prometheus.Registry
	// routes holds each route's latency and its count of 200s, looked up
	// once: the label lookups are a measurable part of a prediction.
	routes      map[string]routeMetrics
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	predictions *prometheus.CounterVec
	invalid     *prometheus.CounterVec
	unseen      *prometheus.CounterVec
	swaps       *prometheus.CounterVec
	model       *prometheus.GaugeVec
	logErrors   prometheus.Counter
	dbRows      *prometheus.CounterVec
	dbErrors    prometheus.Counter
}

type routeMetrics struct {
	latency prometheus.Observer
	ok      prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg:    prometheus.NewRegistry(),
		routes: map[string]routeMetrics{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_serve_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ward_serve_request_duration_seconds", Help: "Time from a request's headers to its answer, by route.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		}, []string{"route"}),
		predictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_serve_predictions_total", Help: "Predictions made (instances), by hospital and model version.",
		}, []string{"hospital", "model_version"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_serve_validation_errors_total", Help: "Request fields refused, by field ((unknown) for fields the model does not take, (body) for bodies that are not a request, (header) for a bad X-Request-Id).",
		}, []string{"field"}),
		unseen: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_serve_unseen_categories_total", Help: "Values the model did not see in training and encoded as other, by field.",
		}, []string{"field"}),
		swaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_serve_model_loads_total", Help: "Attempts to load a new model: swapped (now serving), unchanged (same file), refused (bad artifact; the old one keeps serving).",
		}, []string{"outcome"}),
		model: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ward_serve_model_info", Help: "The model being served: 1 for its hospital, version and digest.",
		}, []string{"hospital", "version", "digest"}),
		logErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ward_serve_prediction_log_errors_total", Help: "Writes of the prediction log that failed.",
		}),
		dbRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_serve_predictions_db_rows_total", Help: "Predictions sent to the database: written, or dropped (queue full or database unreachable at shutdown; the prediction log still holds them).",
		}, []string{"outcome"}),
		dbErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ward_serve_predictions_db_errors_total", Help: "Failed attempts to write a batch of predictions to the database (retried).",
		}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.predictions, m.invalid, m.unseen, m.swaps, m.model,
		m.logErrors, m.dbRows, m.dbErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, o := range []string{"swapped", "unchanged", "refused"} {
		m.swaps.WithLabelValues(o)
	}
	return m
}

// route readies the metrics of a route; routes are set before serving.
func (m *metrics) route(route string) {
	m.routes[route] = routeMetrics{latency: m.latency.WithLabelValues(route), ok: m.requests.WithLabelValues(route, "200")}
}

// observe counts one request and its latency.
func (m *metrics) observe(route string, code int, took time.Duration) {
	r := m.routes[route]
	if code == http.StatusOK {
		r.ok.Inc()
	} else {
		m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	}
	r.latency.Observe(took.Seconds())
}

// serving records the model now being served.
func (m *metrics) serving(old, now *model) {
	if old != nil {
		m.model.DeleteLabelValues(old.Hospital, old.Version, old.Digest)
	}
	m.model.WithLabelValues(now.Hospital, now.Version, now.Digest).Set(1)
	now.predictions = m.predictions.WithLabelValues(now.Hospital, now.Version)
}
