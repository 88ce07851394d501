package server

// Benchmarks at the released ViT-B size, with seeded random weights (see
// vitbModel) and 1024x768 images: no checkpoint needed.
//
//	go test ./server/ -run '^$' -bench 'ClickViTB|UploadFirstMatteViTB' -benchtime 10x
//	go test ./server/ -run '^$' -bench 'RemoveViTB' -benchtime 4x
//	go test ./server/ -run '^$' -bench 'FullCacheViTB' -benchtime 8x

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// benchPhoto is a seeded photo-sized image (1024 x 768).
func benchPhoto(seed int64) *image.NRGBA {
	rng := rand.New(rand.NewSource(seed))
	img := image.NewNRGBA(image.Rect(0, 0, 1024, 768))
	for y := 0; y < 768; y++ {
		for x := 0; x < 1024; x++ {
			v := uint8(rng.Intn(64)) + uint8((x+y)/16)
			img.SetNRGBA(x, y, color.NRGBA{v, v / 2, 255 - v, 255})
		}
	}
	return img
}

// serve runs one request through the handler, in process.
func serve(b testing.TB, s *Server, method, url, ct string, body []byte, want int) []byte {
	b.Helper()
	body, _ = serveTiming(b, s, method, url, ct, body, want)
	return body
}

// serveTiming is serve returning the answer's Server-Timing durations too.
func serveTiming(b testing.TB, s *Server, method, url, ct string, body []byte, want int) ([]byte, map[string]float64) {
	b.Helper()
	req := httptest.NewRequest(method, url, bytes.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != want {
		b.Fatalf("%s %s: %d %.300s", method, url, rec.Code, rec.Body.Bytes())
	}
	timing := map[string]float64{}
	for _, part := range strings.Split(rec.Header().Get("Server-Timing"), ",") {
		name, dur, ok := strings.Cut(strings.TrimSpace(part), ";dur=")
		if v, err := strconv.ParseFloat(dur, 64); ok && err == nil {
			timing[name] = v
		}
	}
	return rec.Body.Bytes(), timing
}

func benchUpload(b testing.TB, s *Server, png []byte) string {
	b.Helper()
	var ii struct{ ID string }
	body := serve(b, s, "POST", "/api/images", "image/png", png, http.StatusCreated)
	if err := json.Unmarshal(body, &ii); err != nil {
		b.Fatal(err)
	}
	return ii.ID
}

// reportPercentiles reports the p50 and p90 of the iterations' durations.
func reportPercentiles(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(ds[len(ds)/2].Seconds(), "p50-s")
	b.ReportMetric(ds[(len(ds)*9)/10].Seconds(), "p90-s")
}

// BenchmarkClickViTB is the latency of one click on an encoded 1024x768
// image: POST .../matte with a point, through the handler (JSON, mask
// decoder, M2M, refinement, PNG). The page's request (alpha and mask PNGs
// in JSON) and a single alpha PNG. Target: p50 <= 0.5 s on 2 cores.
func BenchmarkClickViTB(b *testing.B) {
	s, err := New(Config{Model: vitbModel(b), Slots: 1})
	if err != nil {
		b.Fatal(err)
	}
	id := benchUpload(b, s, pngBytes(b, benchPhoto(3)))
	for _, bc := range []struct{ name, extra string }{
		{"page", `, "output": ["alpha", "mask"], "format": "json"`},
		{"alphaPNG", ``},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var ds, mattes, pngs []time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				body := fmt.Sprintf(`{"points": [[%d, %d, 1]]%s}`, 300+(i%8)*50, 250+(i%5)*60, bc.extra)
				t0 := time.Now()
				_, tm := serveTiming(b, s, "POST", "/api/images/"+id+"/matte", "application/json", []byte(body), 200)
				ds = append(ds, time.Since(t0))
				mattes = append(mattes, time.Duration(tm["matte"]*1e6))
				pngs = append(pngs, time.Duration(tm["png"]*1e6))
			}
			reportPercentiles(b, ds)
			// The library's share (decoder + M2M + refinement) and the PNGs'.
			slices.Sort(mattes)
			slices.Sort(pngs)
			b.ReportMetric(mattes[len(mattes)/2].Seconds(), "p50-matte-s")
			b.ReportMetric(pngs[len(pngs)/2].Seconds(), "p50-png-s")
		})
	}
}

// BenchmarkUploadFirstMatteViTB is the time from the upload of a new
// 1024x768 PNG to its first matte: decode, SAM encoder, then a click.
func BenchmarkUploadFirstMatteViTB(b *testing.B) {
	s, err := New(Config{Model: vitbModel(b), Slots: 1})
	if err != nil {
		b.Fatal(err)
	}
	pngs := make([][]byte, b.N)
	for i := range pngs {
		pngs[i] = pngBytes(b, benchPhoto(int64(100+i)))
	}
	var ds []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		id := benchUpload(b, s, pngs[i])
		serve(b, s, "POST", "/api/images/"+id+"/matte", "application/json", []byte(`{"points": [[512, 384, 1]], "output": ["alpha", "mask"], "format": "json"}`), 200)
		ds = append(ds, time.Since(t0))
	}
	reportPercentiles(b, ds)
}

// BenchmarkRemoveViTB is the throughput of rembg's POST /api/remove over
// loopback with 2 x GOMAXPROCS concurrent clients and 2 inference slots:
// "new" sends a different 1024x768 image each time (decode, encoder,
// matte, cutout PNG), "cached" the same one (its embedding is cached).
func BenchmarkRemoveViTB(b *testing.B) {
	for _, bc := range []struct {
		name string
		same bool
	}{{"new", false}, {"cached", true}} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := New(Config{Model: vitbModel(b), Slots: 2, Queue: 64, Timeout: 10 * time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			ts := httptest.NewServer(s)
			defer ts.Close()
			n := b.N + 8
			bodies := make([][]byte, n)
			cts := make([]string, n)
			for i := range bodies {
				seed := int64(200 + i)
				if bc.same {
					seed = 200
				}
				r, ct := form(b, pngBytes(b, benchPhoto(seed)), nil)
				buf := new(bytes.Buffer)
				buf.ReadFrom(r)
				bodies[i], cts[i] = buf.Bytes(), ct
			}
			if bc.same { // the first request encodes; time the cached ones
				resp, err := http.Post(ts.URL+"/api/remove", cts[0], bytes.NewReader(bodies[0]))
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("warm-up: %v %v", err, resp)
				}
				resp.Body.Close()
			}
			var next atomic.Int64
			b.SetParallelism(2)
			b.ReportAllocs()
			b.ResetTimer()
			t0 := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1) % int64(n)
					resp, err := http.Post(ts.URL+"/api/remove", cts[i], bytes.NewReader(bodies[i]))
					if err != nil {
						b.Error(err)
						return
					}
					var out bytes.Buffer
					out.ReadFrom(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("%d %s", resp.StatusCode, out.Bytes())
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "req/s")
		})
	}
}

// BenchmarkFullCacheViTB uploads 1024x768 images into a 128 MiB
// cache (about 6 images) and reports the peak resident memory: with
// -benchtime 8x the cache is full and evicting. Run it alone, so that the
// peak is its own.
func BenchmarkFullCacheViTB(b *testing.B) {
	const cacheBytes = 128 << 20
	m := vitbModel(b)
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	rssModel := statusKB("VmRSS") << 10
	s, err := New(Config{Model: m, Slots: 1, CacheBytes: cacheBytes})
	if err != nil {
		b.Fatal(err)
	}
	png := pngBytes(b, benchPhoto(7))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// The JSON API does not dedupe: every upload runs the encoder and
		// takes its own place in the cache.
		benchUpload(b, s, png)
	}
	b.StopTimer()
	b.ReportMetric(float64(s.CacheBytes())/(1<<20), "cache-MB")
	b.ReportMetric(float64(rssModel)/(1<<20), "rss-model-MB")
	b.ReportMetric(float64(statusKB("VmHWM")<<10)/(1<<20), "peak-rss-MB")
	text := strings.Split(string(metricsBody(b, s)), "\n")
	for _, l := range text {
		if strings.HasPrefix(l, "mam_cache_images ") || strings.HasPrefix(l, "mam_cache_evictions_total ") {
			b.Log(l)
		}
	}
}

func metricsBody(b testing.TB, s *Server) []byte {
	return serve(b, s, "GET", "/metrics", "", nil, 200)
}
