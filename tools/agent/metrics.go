package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the agent's own, on a registry of their own (the proxied
// /metrics is the model server's); every one carries the hospital, so that
// agents of several hospitals scrape into one Prometheus.
type metrics struct {
	reg            *prometheus.Registry
	serving        *prometheus.GaugeVec
	since          prometheus.Gauge
	inSync         prometheus.Gauge
	lastSuccess    prometheus.Gauge
	switches       prometheus.Counter
	failures       *prometheus.CounterVec
	pollDuration   prometheus.Histogram
	switchDuration prometheus.Histogram
	proxyErrors    prometheus.Counter
	outputErrors   prometheus.Counter
}

func newMetrics(hospital string) *metrics {
	h := prometheus.Labels{"hospital": hospital}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		serving: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ward_agent_serving_info", Help: "1 for the model version and image digest the front endpoint serves.", ConstLabels: h,
		}, []string{"version", "digest"}),
		since: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ward_agent_serving_since_timestamp_seconds", Help: "When the version serving began to serve.", ConstLabels: h,
		}),
		inSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ward_agent_in_sync", Help: "1 when the last poll ended with the manifest's release serving.", ConstLabels: h,
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ward_agent_last_success_timestamp_seconds", Help: "When a poll last ended without an error.", ConstLabels: h,
		}),
		switches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ward_agent_switches_total", Help: "Moves of the front endpoint to a newly started server.", ConstLabels: h,
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_agent_failures_total", Help: "Failures by step (fetch, manifest, tag, verify, pull, unpack, start, ready, restore, crash); each kept the current version serving.", ConstLabels: h,
		}, []string{"step"}),
		pollDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ward_agent_poll_duration_seconds", Help: "Time of a poll: the manifest fetch, and a switch when there is one.", ConstLabels: h,
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}),
		switchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ward_agent_switch_duration_seconds", Help: "Time from the start of a new release's verification to the switch.", ConstLabels: h,
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}),
		proxyErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ward_agent_proxy_errors_total", Help: "Requests the model server did not answer (502).", ConstLabels: h,
		}),
		outputErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ward_agent_output_errors_total", Help: "Writes of the servers' prediction log or logs that failed (the lines are lost).", ConstLabels: h,
		}),
	}
	m.reg.MustRegister(m.serving, m.since, m.inSync, m.lastSuccess, m.switches, m.failures, m.pollDuration, m.switchDuration,
		m.proxyErrors, m.outputErrors, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, s := range Steps {
		m.failures.WithLabelValues(s)
	}
	return m
}
