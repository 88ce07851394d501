package mam

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Downloads against a local server that misbehaves in each of the ways a
// real one can: each fails with a clear error and keeps no bad file in the
// cache, or succeeds with the exact file.
func TestDownloadCases(t *testing.T) {
	body := make([]byte, 200_000)
	rand.New(rand.NewSource(4)).Read(body)
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	// truncate sends half the body under the full Content-Length, then
	// closes the connection.
	truncate := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body[:len(body)/2])
		if hj, ok := w.(http.Hijacker); ok {
			c, _, _ := hj.Hijack()
			c.Close()
		}
	}
	serve := func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "x.pth", zeroTime, bytes.NewReader(body))
	}
	for _, c := range []struct {
		name    string
		handler http.HandlerFunc
		ck      Checkpoint
		want    string // in the error; "" for success
		partial bool   // a .part file is kept for resuming
	}{
		{"whole", serve, Checkpoint{Size: int64(len(body)), SHA256: digest}, "", false},
		{"digest only", serve, Checkpoint{SHA256: digest}, "", false},
		{"truncated body", truncate, Checkpoint{}, "partial file kept", true},
		{"wrong size", serve, Checkpoint{Size: 12345}, "server offers 200000 bytes", false},
		{"wrong digest", serve, Checkpoint{SHA256: strings.Repeat("ab", 32)}, "SHA-256", false},
		{"404", http.NotFound, Checkpoint{}, "404", false},
		{"500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }, Checkpoint{}, "500", false},
		{"range ignored", func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del("Range") // a server without range support sends it all
			serve(w, r)
		}, Checkpoint{Size: int64(len(body))}, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(c.handler)
			defer srv.Close()
			dir := t.TempDir()
			ck := c.ck
			ck.Name, ck.URL = "x.pth", srv.URL+"/x.pth"
			if c.name == "range ignored" { // a partial file from an earlier try
				os.WriteFile(filepath.Join(dir, "x.pth.part"), body[:1000], 0o644)
			}
			path, err := Download(context.Background(), ck, dir, DownloadOptions{})
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got, _ := os.ReadFile(path); !bytes.Equal(got, body) {
					t.Fatal("downloaded file differs")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "x.pth")); err == nil {
				t.Error("a bad file is in the cache")
			}
			_, perr := os.Stat(filepath.Join(dir, "x.pth.part"))
			if c.partial != (perr == nil) {
				t.Errorf("partial file kept: %v, want %v", perr == nil, c.partial)
			}
		})
	}
}

// Offline (nothing listens), the error says so, names the file to put in
// place by hand, and wraps ErrDownload.
func TestDownloadOffline(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	_, err = Download(context.Background(), Checkpoint{Name: "sam.pth", URL: "http://" + addr + "/sam.pth"}, dir, DownloadOptions{})
	if !errors.Is(err, ErrDownload) || !strings.Contains(err.Error(), "offline?") || !strings.Contains(err.Error(), filepath.Join(dir, "sam.pth")) {
		t.Errorf("offline: %v", err)
	}
}
