package server

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	stage       *prometheus.HistogramVec
	queueDepth  prometheus.Gauge
	running     prometheus.Gauge
	slots       prometheus.Gauge
	rejected    *prometheus.CounterVec
	cacheBytes  prometheus.Gauge
	cacheLimit  prometheus.Gauge
	cacheImages prometheus.Gauge
	cacheHits   prometheus.Counter
	cacheMisses prometheus.Counter
	cacheEvicts prometheus.Counter
}

// Stages timed by mam_stage_duration_seconds.
const (
	stageQueue  = "queue"  // waiting for an inference slot
	stageDecode = "decode" // image file -> pixels
	stageEncode = "encode" // SAM image encoder
	stageMatte  = "matte"  // mask decoder + M2M + refinement
	stageLogits = "logits" // mask decoder for a mask_from prompt
	stagePNG    = "png"    // rendering and PNG encoding of the outputs
)

func newMetrics(extra prometheus.Registerer) (*metrics, error) {
	latencyBuckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mam_http_requests_total", Help: "HTTP requests by route, method and status code (499: the client went away).",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mam_http_request_duration_seconds", Help: "HTTP request latency by route.", Buckets: latencyBuckets,
		}, []string{"route"}),
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mam_stage_duration_seconds", Help: "Time spent by stage: queue, decode, encode (SAM image encoder), matte (mask decoder + M2M + refinement), logits, png.", Buckets: latencyBuckets,
		}, []string{"stage"}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mam_queue_depth", Help: "Admitted requests waiting for an inference slot.",
		}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mam_inference_running", Help: "Requests holding an inference slot.",
		}),
		slots: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mam_inference_slots", Help: "Configured inference slots.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mam_rejected_total", Help: "Requests answered 503, by reason: busy (queue full), timeout, draining.",
		}, []string{"reason"}),
		cacheBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mam_cache_bytes", Help: "Memory held by the cached images (embeddings, encoder inputs, pixels, results).",
		}),
		cacheLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mam_cache_limit_bytes", Help: "Configured bound of mam_cache_bytes.",
		}),
		cacheImages: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mam_cache_images", Help: "Images in the cache.",
		}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mam_cache_hits_total", Help: "Lookups of a cached image that found it.",
		}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mam_cache_misses_total", Help: "Lookups of an image id that is unknown or was evicted.",
		}),
		cacheEvicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mam_cache_evictions_total", Help: "Images evicted to keep the cache within its bound.",
		}),
	}
	cs := []prometheus.Collector{m.requests, m.latency, m.stage, m.queueDepth, m.running, m.slots,
		m.rejected, m.cacheBytes, m.cacheLimit, m.cacheImages, m.cacheHits, m.cacheMisses, m.cacheEvicts}
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: metrics: %w", err)
		}
		if extra != nil {
			if err := extra.Register(c); err != nil {
				return nil, fmt.Errorf("server: metrics: %w", err)
			}
		}
	}
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := m.reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) observeRequest(route, method string, status int, d time.Duration) {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
	default:
		method = "OTHER" // bounded label values whatever clients send
	}
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

// time records a stage's duration since start and returns it.
func (m *metrics) time(stage string, start time.Time) time.Duration {
	d := time.Since(start)
	m.stage.WithLabelValues(stage).Observe(d.Seconds())
	return d
}
