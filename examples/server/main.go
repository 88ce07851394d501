// Command server serves Matting Anything over HTTP: the interactive page
// at /, the JSON API under /api/, rembg's POST /api/remove, /healthz,
// /readyz and /metrics (see the server package and its openapi.yaml).
//
//	go run ./examples/server                  # the cached ViT-B model on 127.0.0.1:8080
//	go run ./examples/server -sam S.pth -mam M.pth -addr 127.0.0.1:9000
//
// The model defaults to the released ViT-B checkpoints in the download
// cache (`go run ./examples/matte -download` fetches them). Flags set the
// limits: -max-upload-mb, -max-pixels, -cache-mb, -slots, -queue,
// -timeout, -retry-after. -token (or $MAM_TOKEN) requires a bearer token;
// listening beyond loopback without one logs a warning. -debug-addr serves
// pprof and the metrics on a separate address. SIGTERM or SIGINT drains:
// new requests get 503, those in flight finish (up to -shutdown-timeout).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/mam-go/mam-go/mam"
	"github.com/mam-go/mam-go/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

// run is the command: it serves until ctx ends, then shuts down
// gracefully. ready, when not nil, is called with the listening addresses
// (main, debug) once the server accepts connections.
func run(ctx context.Context, args []string, stderr io.Writer, ready func(addr, debugAddr string)) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		samPath     = fs.String("sam", "", "SAM checkpoint (.pth, .npz or a directory of .npy); default: the cached ViT-B")
		mamPath     = fs.String("mam", "", "MAM checkpoint; default: the cached ViT-B")
		gdinoPath   = fs.String("gdino", "", "GroundingDINO checkpoint for text prompts (groundingdino_swint_ogc.pth); with -vocab")
		vocabPath   = fs.String("vocab", "", "BERT vocab.txt for -gdino")
		addr        = fs.String("addr", "127.0.0.1:8080", "listen address HOST:PORT")
		debugAddr   = fs.String("debug-addr", "", "separate address for pprof and metrics (e.g. 127.0.0.1:6060); off when empty")
		token       = fs.String("token", os.Getenv("MAM_TOKEN"), "bearer token the API requires ($MAM_TOKEN); none when empty")
		maxUploadMB = fs.Int64("max-upload-mb", server.DefaultMaxUploadBytes>>20, "largest image file accepted, in MiB (413 beyond)")
		maxPixels   = fs.Int64("max-pixels", server.DefaultMaxPixels, "largest image accepted, in pixels, checked before decoding (413 beyond)")
		cacheMB     = fs.Int64("cache-mb", server.DefaultCacheBytes>>20, "memory for cached image embeddings, in MiB")
		slots       = fs.Int("slots", server.DefaultSlots, "requests running the model at once")
		queue       = fs.Int("queue", server.DefaultQueue, "requests waiting for a slot; beyond it 503 with Retry-After")
		timeout     = fs.Duration("timeout", server.DefaultTimeout, "per-request timeout, queueing included")
		retryAfter  = fs.Duration("retry-after", server.DefaultRetryAfter, "Retry-After of 503 answers")
		results     = fs.Int("results", server.DefaultResultsPerImage, "recent results kept per image")
		grace       = fs.Duration("shutdown-timeout", 60*time.Second, "how long requests in flight may finish after SIGTERM")
		memLimitMB  = fs.Int64("mem-limit-mb", 0, "Go soft memory limit in MiB (0: model + cache + 512 MiB, unless $GOMEMLIMIT is set)")
		logJSON     = fs.Bool("log-json", false, "log requests as JSON instead of text")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var h slog.Handler = slog.NewTextHandler(stderr, nil)
	if *logJSON {
		h = slog.NewJSONHandler(stderr, nil)
	}
	log := slog.New(h)

	if *samPath == "" || *mamPath == "" {
		s, m, err := server.DefaultCheckpoints()
		if err != nil {
			return err
		}
		if *samPath == "" {
			*samPath = s
		}
		if *mamPath == "" {
			*mamPath = m
		}
		for _, p := range []string{*samPath, *mamPath} {
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("checkpoint %s: %w (download the ViT-B checkpoints with `go run ./examples/matte -download`, or give -sam and -mam)", p, err)
			}
		}
	}
	var opts []mam.Option
	if (*gdinoPath == "") != (*vocabPath == "") {
		return fmt.Errorf("-gdino and -vocab go together")
	}
	if *gdinoPath != "" {
		opts = append(opts, mam.WithDetector(*gdinoPath, *vocabPath))
	}
	t0 := time.Now()
	model, err := server.LoadModel(*samPath, *mamPath, opts...)
	if err != nil {
		return err
	}
	log.Info("model loaded", "sam", *samPath, "mam", *mamPath, "seconds", time.Since(t0).Seconds())

	if os.Getenv("GOMEMLIMIT") == "" {
		limit := *memLimitMB << 20
		if limit == 0 {
			limit = modelBytes(*samPath, *mamPath) + *cacheMB<<20 + 512<<20
		}
		debug.SetMemoryLimit(limit)
	}

	srv, err := server.New(server.Config{
		Model: model, MaxUploadBytes: *maxUploadMB << 20, MaxPixels: *maxPixels, CacheBytes: *cacheMB << 20,
		Slots: *slots, Queue: *queue, Timeout: *timeout, RetryAfter: *retryAfter, ResultsPerImage: *results,
		Token: *token, Logger: log,
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if w := exposureWarning(ln.Addr(), *token); w != "" {
		log.Warn(w, "addr", ln.Addr().String())
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		// Beyond the handler's own timeout, a slow reader of the answer.
		WriteTimeout:   *timeout + 30*time.Second,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(h, slog.LevelWarn),
	}
	errc := make(chan error, 2)
	go func() { errc <- hs.Serve(ln) }()

	var ds *http.Server
	dAddr := ""
	if *debugAddr != "" {
		dl, err := net.Listen("tcp", *debugAddr)
		if err != nil {
			hs.Close()
			return fmt.Errorf("listen (debug): %w", err)
		}
		dAddr = dl.Addr().String()
		if !loopback(dl.Addr()) {
			log.Warn("the debug address (pprof) is reachable beyond loopback", "addr", dAddr)
		}
		ds = &http.Server{Handler: debugMux(srv), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- ds.Serve(dl) }()
	}
	log.Info("serving", "addr", "http://"+ln.Addr().String()+"/", "debug", dAddr)
	if ready != nil {
		ready(ln.Addr().String(), dAddr)
	}

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing requests in flight", "grace", grace.String())
	srv.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	err = hs.Shutdown(sctx)
	if ds != nil {
		ds.Close()
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// debugMux serves pprof and the metrics.
func debugMux(srv *server.Server) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/metrics", srv.MetricsHandler())
	return mux
}

// exposureWarning is the warning for serving the API on addr: beyond
// loopback without a token, anyone who reaches the address uses the model.
func exposureWarning(addr net.Addr, token string) string {
	if token != "" || loopback(addr) {
		return ""
	}
	return "listening beyond loopback without a token: anyone who can reach this address can use the model; set -token or $MAM_TOKEN"
}

// loopback says whether a listening address is reachable from this
// machine only.
func loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// modelBytes estimates the model's memory from its checkpoint files.
func modelBytes(paths ...string) int64 {
	var n int64
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			n += fi.Size()
		} else if errors.Is(err, os.ErrNotExist) {
			continue
		}
	}
	return n
}
