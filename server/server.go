package server

import (
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Errors returned by New, for errors.Is.
var (
	// ErrNoModel: the configuration has no model.
	ErrNoModel = errors.New("no model")
	// ErrConfig: a limit in the configuration is out of range.
	ErrConfig = errors.New("bad configuration")
)

// Defaults of the Config limits.
const (
	DefaultMaxUploadBytes  = 32 << 20          // 32 MiB
	DefaultMaxPixels       = 40_000_000        // 40 megapixels
	DefaultCacheBytes      = 1 << 30           // 1 GiB
	DefaultSlots           = 2                 // inference slots
	DefaultQueue           = 16                // waiting requests
	DefaultTimeout         = 120 * time.Second // per request
	DefaultRetryAfter      = 2 * time.Second
	DefaultResultsPerImage = 4
	maxJSONBytes           = 4 << 20 // a matte request (mask logits fit)
	maxPoints              = 64
)

// Config configures a Server. Zero values take the defaults.
type Config struct {
	// Model is the loaded model (required).
	Model *Model
	// MaxUploadBytes bounds an uploaded file (413 beyond it).
	MaxUploadBytes int64
	// MaxPixels bounds an image's width x height, checked from its header
	// before it is decoded (413 beyond it).
	MaxPixels int64
	// CacheBytes bounds the memory of the cached images: embeddings, the
	// encoder input, the decoded image and its kept results.
	CacheBytes int64
	// Slots is the number of requests that run the model at once.
	Slots int
	// Queue is the number of requests that may wait for a slot; beyond
	// Slots + Queue requests are refused with 503 and Retry-After.
	Queue int
	// Timeout bounds each request, queueing included (503 beyond it).
	Timeout time.Duration
	// RetryAfter is what a 503 asks the client to wait.
	RetryAfter time.Duration
	// ResultsPerImage is how many recent results of each image are kept
	// for GET .../results/{rid} and mask_from.
	ResultsPerImage int
	// Token, when not empty, is the bearer token the API requires
	// (Authorization: Bearer TOKEN). The page, /healthz, /readyz,
	// /api/info and /api/openapi.yaml stay open.
	Token string
	// Logger receives one record per request; nil logs nothing.
	Logger *slog.Logger
	// Registerer, when not nil, also gets the server's metrics (they are
	// always served at /metrics from the server's own registry).
	Registerer prometheus.Registerer
}

// Server is the HTTP handler. Create it with New; it is safe for
// concurrent use.
type Server struct {
	cfg      Config
	eng      *engine
	cache    *cache
	lim      *limiter
	met      *metrics
	mux      *http.ServeMux
	log      *slog.Logger
	draining atomic.Bool
	static   http.Handler
}

//go:embed web openapi.yaml
var assets embed.FS

// New checks cfg, fills in the defaults and returns the handler.
func New(cfg Config) (*Server, error) {
	eng, err := newEngine(cfg.Model)
	if err != nil {
		return nil, err
	}
	def := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.MaxUploadBytes, DefaultMaxUploadBytes)
	def(&cfg.MaxPixels, DefaultMaxPixels)
	def(&cfg.CacheBytes, DefaultCacheBytes)
	if cfg.Slots == 0 {
		cfg.Slots = DefaultSlots
	}
	if cfg.Queue == 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = DefaultRetryAfter
	}
	if cfg.ResultsPerImage == 0 {
		cfg.ResultsPerImage = DefaultResultsPerImage
	}
	switch {
	case cfg.MaxUploadBytes < 0, cfg.MaxPixels < 0, cfg.CacheBytes < 0:
		return nil, fmt.Errorf("server: negative size limit: %w", ErrConfig)
	case cfg.Slots < 0, cfg.Queue < 0, cfg.ResultsPerImage < 0:
		return nil, fmt.Errorf("server: negative slots, queue or results per image: %w", ErrConfig)
	case cfg.Timeout < 0, cfg.RetryAfter < 0:
		return nil, fmt.Errorf("server: negative timeout or retry-after: %w", ErrConfig)
	case cfg.Slots > 1024 || cfg.Queue > 1<<20:
		return nil, fmt.Errorf("server: %d slots and a queue of %d: %w", cfg.Slots, cfg.Queue, ErrConfig)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, eng: eng, log: log}
	s.met, err = newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s.cache = newCache(cfg.CacheBytes, cfg.ResultsPerImage, s.met)
	s.lim = newLimiter(cfg.Slots, cfg.Queue, s.met)
	web, err := fs.Sub(assets, "web")
	if err != nil {
		return nil, fmt.Errorf("server: embedded page: %w", err)
	}
	s.static = http.FileServerFS(web)
	s.routes()
	s.met.cacheLimit.Set(float64(cfg.CacheBytes))
	s.met.slots.Set(float64(cfg.Slots))
	return s, nil
}

// Drain makes the server refuse new API requests (503 with Retry-After)
// and report not ready on /readyz, while requests already admitted run to
// their end. Call it on SIGTERM before http.Server.Shutdown.
func (s *Server) Drain() { s.draining.Store(true) }

// Draining says whether Drain was called.
func (s *Server) Draining() bool { return s.draining.Load() }

// MetricsHandler serves the server's Prometheus metrics (for a separate
// debug or metrics address; /metrics on the handler serves the same).
func (s *Server) MetricsHandler() http.Handler { return s.met.handler() }

// CacheBytes is the memory the image cache holds now.
func (s *Server) CacheBytes() int64 { return s.cache.usedBytes() }

// route is one endpoint: its pattern, whether it needs the token, and
// whether it is refused while draining.
func (s *Server) routes() {
	mux := http.NewServeMux()
	handle := func(pattern string, auth bool, h http.HandlerFunc) {
		var hh http.Handler = h
		if auth {
			hh = s.requireToken(hh)
		}
		mux.Handle(pattern, hh)
	}
	handle("GET /healthz", false, s.handleHealthz)
	handle("GET /readyz", false, s.handleReadyz)
	handle("GET /metrics", true, s.met.handler().ServeHTTP)
	handle("GET /api/info", false, s.handleInfo)
	handle("GET /api/openapi.yaml", false, s.handleOpenAPI)
	handle("POST /api/images", true, s.handleUpload)
	handle("GET /api/images/{id}", true, s.handleGetImage)
	handle("DELETE /api/images/{id}", true, s.handleDeleteImage)
	handle("POST /api/images/{id}/matte", true, s.handleMatte)
	handle("GET /api/images/{id}/results/{rid}", true, s.handleResult)
	handle("POST /api/remove", true, s.handleRemove)
	handle("GET /api/remove", true, s.handleRemoveGet)
	handle("/api/", false, s.handleNoRoute)
	handle("/", false, s.handleStatic)
	s.mux = mux
}

// ServeHTTP serves the page, the API, the probes and the metrics.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	_, pattern := s.mux.Handler(r)
	if pattern == "" {
		pattern = "other"
	}
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
			if !rec.wrote {
				s.writeError(rec, r, errorf(http.StatusInternalServerError, "internal error"))
			}
		}
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		if rec.clientGone {
			status = statusClientClosed
		}
		d := time.Since(start)
		s.met.observeRequest(pattern, r.Method, status, d)
		s.log.LogAttrs(r.Context(), levelFor(status), "request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.String("route", pattern), slog.Int("status", status),
			slog.Int64("bytes", rec.bytes), slog.Duration("duration", d),
			slog.String("remote", r.RemoteAddr))
	}()
	h := rec.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	s.mux.ServeHTTP(rec, r)
}

// statusClientClosed is what logs and metrics record for a request whose
// client went away before the answer (nginx's 499).
const statusClientClosed = 499

func levelFor(status int) slog.Level {
	switch {
	case status >= 500 && status != http.StatusServiceUnavailable:
		return slog.LevelError
	case status >= 400:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// requireToken checks the bearer token when one is configured.
func (s *Server) requireToken(h http.Handler) http.Handler {
	if s.cfg.Token == "" {
		return h
	}
	want := []byte("Bearer " + s.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mam"`)
			s.writeError(w, r, errorf(http.StatusUnauthorized, "missing or wrong bearer token"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// handleNoRoute answers what no API route matched: 405 with Allow when the
// path exists for other methods, else 404, as JSON.
func (s *Server) handleNoRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		rr := r.Clone(r.Context())
		rr.Method = m
		if _, pat := s.mux.Handler(rr); pat != "" && pat != "/api/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.writeError(w, r, errorf(http.StatusMethodNotAllowed, "%s is not allowed on %s: use %s", r.Method, r.URL.Path, strings.Join(allow, " or ")))
		return
	}
	s.writeError(w, r, errorf(http.StatusNotFound, "no endpoint %s %s", r.Method, r.URL.Path))
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("draining\n"))
		return
	}
	w.Write([]byte("ready\n"))
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	b, err := assets.ReadFile("openapi.yaml")
	if err != nil {
		s.writeError(w, r, errorf(http.StatusInternalServerError, "openapi.yaml: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(b)
}

// handleStatic serves the embedded page with a strict content security
// policy: everything comes from this server, nothing from the network.
func (s *Server) handleStatic(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	if strings.HasSuffix(r.URL.Path, "/") && r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	s.static.ServeHTTP(w, r)
}
