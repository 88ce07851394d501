package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func golden(parts ...string) string {
	return filepath.Join(append([]string{"..", "..", "testdata", "golden"}, parts...)...)
}

var tinyArgs = []string{"-sam", golden("tiny", "weights", "sam.pth"), "-mam", golden("tiny", "weights", "mam.pth")}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs the command on loopback ports until the returned cancel.
func start(t *testing.T, args ...string) (addr, debugAddr string, cancel func() error, logs *syncBuffer) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	logs = &syncBuffer{}
	ready := make(chan [2]string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append(append([]string{"-addr", "127.0.0.1:0"}, tinyArgs...), args...), logs, func(a, d string) { ready <- [2]string{a, d} })
	}()
	select {
	case a := <-ready:
		addr, debugAddr = a[0], a[1]
	case err := <-done:
		stop()
		t.Fatalf("run: %v\n%s", err, logs)
	case <-time.After(30 * time.Second):
		stop()
		t.Fatal("the server did not start")
	}
	var once sync.Once
	var err error
	cancel = func() error {
		once.Do(func() { stop(); err = <-done })
		return err
	}
	t.Cleanup(func() { cancel() })
	return addr, debugAddr, cancel, logs
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServe(t *testing.T) {
	addr, debug, cancel, logs := start(t, "-debug-addr", "127.0.0.1:0", "-slots", "1", "-queue", "2")
	base := "http://" + addr
	for _, tc := range []struct {
		url    string
		status int
		has    string
	}{
		{base + "/healthz", 200, "ok"},
		{base + "/readyz", 200, "ready"},
		{base + "/", 200, "Matting Anything"},
		{base + "/api/info", 200, `"slots":1`},
		{base + "/metrics", 200, "mam_queue_depth"},
		{base + "/debug/pprof/", 404, ""}, // pprof is on the debug address only
		{"http://" + debug + "/debug/pprof/", 200, "goroutine"},
		{"http://" + debug + "/metrics", 200, "mam_cache_bytes"},
	} {
		if code, body := get(t, tc.url); code != tc.status || !strings.Contains(body, tc.has) {
			t.Errorf("GET %s: %d %.100q", tc.url, code, body)
		}
	}
	img, err := os.ReadFile(golden("tiny", "dog_240", "image.png"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(base+"/api/remove", "image/png", bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("remove: %d", resp.StatusCode)
	}
	if err := cancel(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"model loaded", "serving", `path=/api/remove`, "status=200", "stopped"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// TestGracefulShutdown: on SIGTERM (the context's end) a request in flight
// finishes with its answer, and the listener is closed to new ones.
func TestGracefulShutdown(t *testing.T) {
	addr, debug, cancel, _ := start(t, "-debug-addr", "127.0.0.1:0", "-slots", "1")
	base := "http://" + addr
	img, err := os.ReadFile(golden("tiny", "dog_240", "image.png"))
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		code int
		err  error
	}
	res := make(chan answer, 1)
	go func() {
		resp, err := http.Post(base+"/api/remove", "image/png", bytes.NewReader(img)) // encoder + M2M on 240x160
		if err != nil {
			res <- answer{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		res <- answer{code: resp.StatusCode}
	}()
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		if _, m := get(t, "http://"+debug+"/metrics"); strings.Contains(m, "mam_inference_running 1") {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the request never ran")
		}
	}
	stopped := make(chan error, 1)
	go func() { stopped <- cancel() }()
	a := <-res
	if a.err != nil || a.code != 200 {
		t.Fatalf("the request in flight: %d %v", a.code, a.err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the listener still accepts connections after shutdown")
	}
}

func TestErrors(t *testing.T) {
	empty := t.TempDir()
	t.Setenv("MAM_CACHE", empty)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad flag", []string{"-nope"}, "flag provided but not defined"},
		{"extra argument", append(append([]string{}, tinyArgs...), "extra"), "unexpected arguments"},
		{"no cached checkpoints", nil, "matte -download"},
		{"bad checkpoint", []string{"-sam", filepath.Join(empty, "x.pth"), "-mam", filepath.Join(empty, "y.pth")}, "loading the model"},
		{"bad address", append(append([]string{}, tinyArgs...), "-addr", "127.0.0.1:99999"), "listen"},
		{"bad limits", append(append([]string{}, tinyArgs...), "-slots", "-3"), "bad configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			err := run(context.Background(), tc.args, &logs, nil)
			if err == nil || !strings.Contains(err.Error()+logs.String(), tc.want) {
				t.Fatalf("got %v, want %q\n%s", err, tc.want, logs.String())
			}
		})
	}
}

func TestExposureWarning(t *testing.T) {
	for _, tc := range []struct {
		ip    string
		token string
		warn  bool
	}{
		{"127.0.0.1", "", false},
		{"::1", "", false},
		{"0.0.0.0", "", true},
		{"192.168.1.5", "", true},
		{"0.0.0.0", "secret", false},
	} {
		got := exposureWarning(&net.TCPAddr{IP: net.ParseIP(tc.ip), Port: 8080}, tc.token)
		if (got != "") != tc.warn {
			t.Errorf("%s token %q: warning %q", tc.ip, tc.token, got)
		}
	}
}
