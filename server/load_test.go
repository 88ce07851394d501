package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"io"
	"math/rand"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// loadPrompts are the mattes the load test asks for, as JSON and as the
// library prompt.
var loadPrompts = []struct {
	json string
	p    prompt
}{
	{`{"box": [40, 1, 120, 15]}`, prompt{Box: testBox, Mode: "postprocess"}},
	{`{"points": [[80, 8, 1]]}`, prompt{Points: []point{testPoint}, Mode: "postprocess"}},
	{`{"points": [[30, 8, 1], [140, 8, 0]], "mode": "maskguide"}`, prompt{Points: []point{{30, 8, 1}, {140, 8, 0}}, Mode: "maskguide"}},
}

// TestLoad runs 64 clients x 5 requests (8 x 3 under -race) on loopback,
// mixing uploads, mattes and rembg calls, against 2 slots and a queue of
// 24, within 60 s. Every request must end with its success status or 503
// with Retry-After, none past its timeout; every success must be the
// library's answer; the peak RSS must stay under the RSS before the load +
// the cache's bound + 300 MB; the goroutines must come back to their
// number before the load.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	clients, perClient, nImages := 64, 5, 4
	if raceEnabled {
		clients, perClient, nImages = 8, 3, 2
	}
	const (
		timeout    = 20 * time.Second
		cacheBytes = 128 << 20
		budget     = 60 * time.Second
	)
	m := tinyModel(t)
	type loadImage struct {
		img     *image.NRGBA
		png     []byte
		alpha   [][]uint8 // by loadPrompts
		cutout  []uint8   // /api/remove, whole-image box
		boxCut  []uint8   // /api/remove with box=40,1,120,15
		omAlpha []uint8   // /api/remove with om=true
		id      string
	}
	imgs := make([]*loadImage, nImages)
	whole := prompt{Box: &box{0, 0, 160, 16}, Mode: "postprocess"}
	for i := range imgs {
		li := &loadImage{img: thinImage(160, 16, int64(10+i))}
		li.png = pngBytes(t, li.img)
		for _, lp := range loadPrompts {
			li.alpha = append(li.alpha, libraryAlpha(t, m, li.img, lp.p))
		}
		li.cutout = libraryCutout(t, m, li.img, whole).Pix
		li.boxCut = libraryCutout(t, m, li.img, loadPrompts[0].p).Pix
		li.omAlpha = libraryAlpha(t, m, li.img, whole)
		imgs[i] = li
	}
	s, ts := newTestServer(t, Config{Slots: 2, Queue: 24, Timeout: timeout, CacheBytes: cacheBytes, RetryAfter: time.Second})
	for _, li := range imgs {
		li.id = uploadImage(t, ts.URL, li.png)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: timeout + 10*time.Second}
	defer client.CloseIdleConnections()
	// Warm the connections' goroutines out of the baseline: count after
	// the test closes them.
	runtime.GC()
	baseGoroutines := runtime.NumGoroutine()
	baseRSS := statusKB("VmRSS") << 10
	peakReset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil

	type outcome struct {
		op      string
		status  int
		retry   string
		elapsed time.Duration
		err     string
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
	)
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(c)))
			var own []string // ids this client uploaded, with their image
			var ownImg []*loadImage
			for j := 0; j < perClient; j++ {
				li := imgs[rng.Intn(len(imgs))]
				var (
					op, url, ct string
					body        []byte
					check       func(b []byte) string
					want        = 200
				)
				switch k := rng.Intn(10); {
				case k < 3: // upload
					op, url, ct, body, want = "upload", "/api/images", "image/png", li.png, 201
					check = func(b []byte) string {
						var ii imageInfo
						if json.Unmarshal(b, &ii) != nil || !isID(ii.ID) || ii.Width != 160 {
							return "bad upload answer"
						}
						mu.Lock()
						own, ownImg = append(own, ii.ID), append(ownImg, li)
						mu.Unlock()
						return ""
					}
				case k < 7: // matte, on a shared image or one of this client's
					id := li.id
					mu.Lock()
					if len(own) > 0 && rng.Intn(2) == 0 {
						n := rng.Intn(len(own))
						id, li = own[n], ownImg[n]
					}
					mu.Unlock()
					pi := rng.Intn(len(loadPrompts))
					op, url, ct, body = "matte", "/api/images/"+id+"/matte", "application/json", []byte(loadPrompts[pi].json)
					check = func(b []byte) string { return compareGray(b, li.alpha[pi]) }
				default: // rembg
					var fields map[string]string
					wantPix := li.cutout
					gray := false
					switch rng.Intn(3) {
					case 1:
						fields, wantPix = map[string]string{"box": "40,1,120,15"}, li.boxCut
					case 2:
						fields, wantPix, gray = map[string]string{"om": "true"}, li.omAlpha, true
					}
					r, fct := form(t, li.png, fields)
					body, _ = io.ReadAll(r)
					op, url, ct = "remove", "/api/remove", fct
					check = func(b []byte) string {
						if gray {
							return compareGray(b, wantPix)
						}
						img, _, err := image.Decode(bytes.NewReader(b))
						if n, ok := img.(*image.NRGBA); err != nil || !ok || !bytes.Equal(n.Pix, wantPix) {
							return "the cutout differs from the library's"
						}
						return ""
					}
				}
				req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+url, bytes.NewReader(body))
				req.Header.Set("Content-Type", ct)
				t0 := time.Now()
				resp, err := client.Do(req)
				o := outcome{op: op}
				if err != nil {
					o.err = err.Error()
				} else {
					b, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					o.status, o.retry = resp.StatusCode, resp.Header.Get("Retry-After")
					switch {
					case rerr != nil:
						o.err = rerr.Error()
					case resp.StatusCode == want:
						o.err = check(b)
					case resp.StatusCode != 503:
						o.err = fmt.Sprintf("answer %.200s", b)
					}
				}
				o.elapsed = time.Since(t0)
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	peakRSS := statusKB("VmHWM") << 10

	counts := map[string]int{}
	ok := 0
	var slowest time.Duration
	for _, o := range outcomes {
		counts[fmt.Sprintf("%s %d", o.op, o.status)]++
		slowest = max(slowest, o.elapsed)
		switch {
		case o.err != "":
			t.Errorf("%s: status %d: %s", o.op, o.status, o.err)
		case o.status == 503 && o.retry == "":
			t.Errorf("%s: 503 without Retry-After", o.op)
		case o.status == 200 || o.status == 201:
			ok++
		}
		if o.elapsed > timeout+2*time.Second {
			t.Errorf("%s took %v, past the timeout of %v", o.op, o.elapsed, timeout)
		}
	}
	t.Logf("%d requests in %v (slowest %v): %v", len(outcomes), elapsed.Round(time.Millisecond), slowest.Round(time.Millisecond), counts)
	if len(outcomes) != clients*perClient {
		t.Errorf("%d outcomes, want %d", len(outcomes), clients*perClient)
	}
	if elapsed > budget {
		t.Errorf("the load took %v, budget %v", elapsed, budget)
	}
	if ok < len(outcomes)/4 {
		t.Errorf("only %d of %d requests succeeded", ok, len(outcomes))
	}
	if used := s.CacheBytes(); used > cacheBytes {
		t.Errorf("cache holds %d bytes, bound %d", used, cacheBytes)
	}
	limit := baseRSS + cacheBytes + 300<<20
	t.Logf("RSS before %d MB, peak %d MB (reset: %v), limit %d MB", baseRSS>>20, peakRSS>>20, peakReset, limit>>20)
	if !raceEnabled && peakReset && peakRSS > limit {
		t.Errorf("peak RSS %d MB over %d MB", peakRSS>>20, limit>>20)
	}

	// Everything started has ended: no request admitted, nothing queued,
	// and the goroutines are back once the connections close.
	client.CloseIdleConnections()
	waitFor(t, func() bool { return len(s.lim.admit) == 0 && len(s.lim.slots) == 0 && s.lim.waiting.Load() == 0 }, "the limiter to empty")
	end := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > baseGoroutines && time.Now().Before(end) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > baseGoroutines {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after the load, %d before:\n%s", n, baseGoroutines, buf[:runtime.Stack(buf, true)])
	}
	text := metricsText(t, ts.URL)
	for _, want := range []string{"mam_queue_depth 0", "mam_inference_running 0"} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics after the load lack %q", want)
		}
	}
}

// compareGray says how a gray PNG differs from want ("" when equal).
func compareGray(b []byte, want []uint8) string {
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return "not a PNG: " + err.Error()
	}
	g, ok := img.(*image.Gray)
	if !ok {
		return fmt.Sprintf("a %T, not gray", img)
	}
	if !bytes.Equal(g.Pix, want) {
		return "the matte differs from the library's"
	}
	return ""
}

// statusKB reads a field of /proc/self/status in kB (0 when unknown).
func statusKB(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
