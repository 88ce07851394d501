package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"net/http"
	"strings"
	"testing"
	"time"
)

// testImage is the strip most handler tests matte, with prompts on it.
var (
	testImg   = thinImage(160, 16, 1)
	testBox   = &box{40, 1, 120, 15}
	testPoint = point{80, 8, 1}
)

func TestConfig(t *testing.T) {
	m := tinyModel(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		want error
	}{
		{"no model", Config{}, ErrNoModel},
		{"negative upload", Config{Model: m, MaxUploadBytes: -1}, ErrConfig},
		{"negative pixels", Config{Model: m, MaxPixels: -1}, ErrConfig},
		{"negative cache", Config{Model: m, CacheBytes: -5}, ErrConfig},
		{"negative slots", Config{Model: m, Slots: -1}, ErrConfig},
		{"negative queue", Config{Model: m, Queue: -1}, ErrConfig},
		{"negative timeout", Config{Model: m, Timeout: -time.Second}, ErrConfig},
		{"huge slots", Config{Model: m, Slots: 1 << 20}, ErrConfig},
		{"defaults", Config{Model: m}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.cfg)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err == nil && (s.cfg.Slots != DefaultSlots || s.cfg.CacheBytes != DefaultCacheBytes || s.cfg.Timeout != DefaultTimeout) {
				t.Errorf("defaults not applied: %+v", s.cfg)
			}
		})
	}
}

// TestAPI uploads an image and mattes it with every kind of request,
// comparing the mattes with the library's.
func TestAPI(t *testing.T) {
	m := tinyModel(t)
	_, ts := newTestServer(t, Config{})
	id := uploadImage(t, ts.URL, pngBytes(t, testImg))

	resp, b := do(t, "GET", ts.URL+"/api/images/"+id, "", nil)
	var ii imageInfo
	if resp.StatusCode != 200 || json.Unmarshal(b, &ii) != nil || ii.Width != 160 || ii.Height != 16 || ii.CacheBytes <= 0 {
		t.Fatalf("GET image: %d %s", resp.StatusCode, b)
	}

	matteURL := ts.URL + "/api/images/" + id + "/matte"
	var firstResult string
	for _, tc := range []struct {
		name string
		req  string
		p    prompt // the library prompt the alpha must match (Mode "" = no check)
	}{
		{"box", `{"box": {"x0": 40, "y0": 1, "x1": 120, "y1": 15}}`, prompt{Box: testBox, Mode: "postprocess"}},
		{"box array", `{"box": [40, 1, 120, 15], "output": "alpha", "format": "png"}`, prompt{Box: testBox, Mode: "postprocess"}},
		{"point", `{"points": [{"x": 80, "y": 8, "label": 1}], "mode": "maskguide"}`, prompt{Points: []point{testPoint}, Mode: "maskguide"}},
		{"point array, no label", `{"points": [[80, 8]], "mode": "plain"}`, prompt{Points: []point{testPoint}, Mode: "plain"}},
		{"points and box", `{"points": [[80, 8, 1], [10, 8, 0]], "box": [40, 1, 120, 15]}`,
			prompt{Points: []point{testPoint, {10, 8, 0}}, Box: testBox, Mode: "postprocess"}},
		{"box partly outside", `{"box": [-20, -5, 120, 40]}`, prompt{Box: &box{-20, -5, 120, 40}, Mode: "postprocess"}},
		{"mask", `{"box": [40, 1, 120, 15], "output": "mask"}`, prompt{}},
		{"cutout", `{"box": [40, 1, 120, 15], "output": "cutout"}`, prompt{}},
		{"composite", `{"box": [40, 1, 120, 15], "output": "composite", "background": "#ff0000"}`, prompt{}},
		{"greenscreen", `{"box": [40, 1, 120, 15], "output": "greenscreen"}`, prompt{}},
		{"alpha16", `{"box": [40, 1, 120, 15], "output": "alpha16"}`, prompt{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := do(t, "POST", matteURL, "application/json", jsonBody(t, tc.req))
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			if resp.Header.Get("X-Result-Id") == "" || !strings.Contains(resp.Header.Get("Server-Timing"), "matte;dur=") {
				t.Errorf("headers %v", resp.Header)
			}
			if firstResult == "" {
				firstResult = resp.Header.Get("X-Result-Id")
			}
			img := decodePNG(t, b)
			if img.Bounds() != testImg.Bounds() {
				t.Fatalf("output is %v", img.Bounds())
			}
			if tc.p.Mode != "" {
				samePix(t, "alpha", grayPix(t, b), libraryAlpha(t, m, testImg, tc.p))
			}
			switch {
			case strings.Contains(tc.req, "cutout"):
				if _, ok := img.(*image.NRGBA); !ok {
					t.Errorf("cutout is %T, want NRGBA", img)
				}
			case strings.Contains(tc.req, "composite"), strings.Contains(tc.req, "greenscreen"):
				if _, _, _, a := img.At(0, 0).RGBA(); a != 0xffff {
					t.Errorf("composite is not opaque")
				}
			case strings.Contains(tc.req, "alpha16"):
				if _, ok := img.(*image.Gray16); !ok {
					t.Errorf("alpha16 is %T", img)
				}
			}
		})
	}

	// JSON answers with several outputs, logits, and iterative refinement.
	var first matteAnswer
	t.Run("json", func(t *testing.T) {
		resp, b := do(t, "POST", matteURL, "application/json", jsonBody(t,
			`{"points": [[80, 8, 1]], "output": ["alpha", "mask", "cutout"], "format": "json", "return_logits": true}`))
		if resp.StatusCode != 200 || json.Unmarshal(b, &first) != nil {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		if len(first.Images) != 3 || first.ResultID == "" || first.ImageID != id || first.Width != 160 || first.Height != 16 || first.Mode != "postprocess" {
			t.Fatalf("answer %+v", first)
		}
		png := dataURL(t, first.Images["alpha"])
		samePix(t, "alpha", grayPix(t, png), libraryAlpha(t, m, testImg, prompt{Points: []point{testPoint}, Mode: "postprocess"}))
		if raw, _ := base64.StdEncoding.DecodeString(first.Logits); len(raw) != 4*first.Side*first.Side || first.Side != 64 {
			t.Fatalf("logits: %d bytes, side %d", len(raw), first.Side)
		}
		if _, ok := first.Timings["matte"]; !ok {
			t.Errorf("timings %v", first.Timings)
		}
	})
	t.Run("mask_from equals mask_logits", func(t *testing.T) {
		if first.ResultID == "" {
			t.Skip("json failed")
		}
		var a, b2 matteAnswer
		resp, b := do(t, "POST", matteURL, "application/json", jsonBody(t, map[string]any{
			"points": [][]float64{{80, 8, 1}}, "mask_from": first.ResultID, "format": "json"}))
		if resp.StatusCode != 200 || json.Unmarshal(b, &a) != nil {
			t.Fatalf("mask_from: %d %s", resp.StatusCode, b)
		}
		if _, ok := a.Timings["logits"]; !ok {
			t.Errorf("no logits timing: %v", a.Timings)
		}
		resp, b = do(t, "POST", matteURL, "application/json", jsonBody(t, map[string]any{
			"points": [][]float64{{80, 8, 1}}, "mask_logits": first.Logits, "format": "json"}))
		if resp.StatusCode != 200 || json.Unmarshal(b, &b2) != nil {
			t.Fatalf("mask_logits: %d %s", resp.StatusCode, b)
		}
		samePix(t, "mask_from vs mask_logits", grayPix(t, dataURL(t, a.Images["alpha"])), grayPix(t, dataURL(t, b2.Images["alpha"])))
		// A mask alone is a prompt too.
		resp, b = do(t, "POST", matteURL, "application/json", jsonBody(t, map[string]any{"mask_from": a.ResultID}))
		if resp.StatusCode != 200 {
			t.Fatalf("mask alone: %d %s", resp.StatusCode, b)
		}
	})
	t.Run("results", func(t *testing.T) {
		resp, b := do(t, "GET", ts.URL+"/api/images/"+id, "", nil)
		if json.Unmarshal(b, &ii) != nil || len(ii.Results) != DefaultResultsPerImage {
			t.Fatalf("%d %s: want %d results kept", resp.StatusCode, b, DefaultResultsPerImage)
		}
		rid := ii.Results[len(ii.Results)-1]
		for _, out := range []string{"alpha", "cutout", "mask", "greenscreen", "composite&background=blue"} {
			resp, b := do(t, "GET", ts.URL+"/api/images/"+id+"/results/"+rid+"?download=1&output="+out, "", nil)
			if resp.StatusCode != 200 || decodePNG(t, b).Bounds() != testImg.Bounds() {
				t.Fatalf("%s: %d", out, resp.StatusCode)
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") {
				t.Errorf("%s: Content-Disposition %q", out, resp.Header.Get("Content-Disposition"))
			}
		}
		// The oldest results were dropped.
		resp, _ = do(t, "GET", ts.URL+"/api/images/"+id+"/results/"+firstResult, "", nil)
		if resp.StatusCode != 404 {
			t.Errorf("dropped result: %d, want 404", resp.StatusCode)
		}
	})
	t.Run("delete", func(t *testing.T) {
		if resp, b := do(t, "DELETE", ts.URL+"/api/images/"+id, "", nil); resp.StatusCode != 204 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		for _, req := range [][2]string{{"GET", "/api/images/" + id}, {"DELETE", "/api/images/" + id}, {"POST", "/api/images/" + id + "/matte"}} {
			resp, b := do(t, req[0], ts.URL+req[1], "application/json", jsonBody(t, `{"box": [1, 1, 9, 9]}`))
			if resp.StatusCode != 404 {
				t.Errorf("%s %s: %d %s", req[0], req[1], resp.StatusCode, b)
			}
			errorOf(t, b)
		}
	})
}

func dataURL(t testing.TB, s string) []byte {
	t.Helper()
	const pre = "data:image/png;base64,"
	if !strings.HasPrefix(s, pre) {
		t.Fatalf("not a PNG data URL: %.40q", s)
	}
	b, err := base64.StdEncoding.DecodeString(s[len(pre):])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestErrors sends every kind of bad request: each must get its status
// and a JSON error, and none may break the server.
func TestErrors(t *testing.T) {
	s, ts := newTestServer(t, Config{MaxUploadBytes: 200_000, MaxPixels: 100_000})
	small := pngBytes(t, testImg)
	id := uploadImage(t, ts.URL, small)
	big := pngBytes(t, image.NewGray(image.Rect(0, 0, 1000, 1000))) // 1e6 pixels, a small file
	noise := make([]byte, 300_000)
	for i := range noise {
		noise[i] = byte(i * 7919 >> 3)
	}
	mURL := "/api/images/" + id + "/matte"
	logits := base64.StdEncoding.EncodeToString(make([]byte, 4*64*64))
	type req struct {
		name, method, path, ct string
		body                   any // string, []byte or func() (io.Reader, content type)
		status                 int
	}
	multi := func(file []byte, fields map[string]string) func() (*bytes.Buffer, string) {
		return func() (*bytes.Buffer, string) {
			r, ct := form(t, file, fields)
			return r.(*bytes.Buffer), ct
		}
	}
	cases := []req{
		// uploads
		{"upload over the size limit", "POST", "/api/images", "", multi(noise, nil), 413},
		{"raw upload over the size limit", "POST", "/api/images", "image/png", noise, 413},
		{"upload over the pixel limit", "POST", "/api/images", "", multi(big, nil), 413},
		{"upload not an image", "POST", "/api/images", "", multi([]byte("hello, not an image"), nil), 415},
		{"upload empty raw body", "POST", "/api/images", "image/png", "", 400},
		{"upload without the file field", "POST", "/api/images", "", multi(nil, map[string]string{"x": "1"}), 400},
		{"upload as JSON", "POST", "/api/images", "application/json", `{"image": "x"}`, 415},
		{"upload truncated PNG", "POST", "/api/images", "image/png", small[:100], 400},
		{"upload multipart without boundary", "POST", "/api/images", "multipart/form-data", "abc", 400},
		{"upload bad multipart", "POST", "/api/images", "multipart/form-data; boundary=zzz", "--zzz\r\nbroken", 400},
		// mattes
		{"matte unknown id", "POST", "/api/images/0123456789abcdef0123456789abcdef/matte", "application/json", `{"box": [1, 1, 9, 9]}`, 404},
		{"matte malformed id", "POST", "/api/images/..%2f..%2fetc/matte", "application/json", `{"box": [1, 1, 9, 9]}`, 404},
		{"matte bad JSON", "POST", mURL, "application/json", `{"box": [1, 1, 9, 9`, 400},
		{"matte empty body", "POST", mURL, "application/json", ``, 400},
		{"matte unknown field", "POST", mURL, "application/json", `{"bx": [1, 1, 9, 9]}`, 400},
		{"matte two values", "POST", mURL, "application/json", `{"box": [1, 1, 9, 9]} {}`, 400},
		{"matte trailing data", "POST", mURL, "application/json", `{"box": [1, 1, 9, 9]} x`, 400},
		{"matte wrong type", "POST", mURL, "application/json", `{"box": "1,1,9,9"}`, 400},
		{"matte empty prompt", "POST", mURL, "application/json", `{}`, 400},
		{"matte point label 2", "POST", mURL, "application/json", `{"points": [[5, 5, 2]]}`, 400},
		{"matte object point label 2", "POST", mURL, "application/json", `{"points": [{"x": 5, "y": 5, "label": 2}]}`, 400},
		{"matte point without y", "POST", mURL, "application/json", `{"points": [{"x": 5}]}`, 400},
		{"matte point of 4 numbers", "POST", mURL, "application/json", `{"points": [[5, 5, 1, 1]]}`, 400},
		{"matte point outside", "POST", mURL, "application/json", `{"points": [[500, 5, 1]]}`, 400},
		{"matte negative point", "POST", mURL, "application/json", `{"points": [[-1, 5, 1]]}`, 400},
		{"matte huge number", "POST", mURL, "application/json", `{"box": [0, 0, 1e400, 5]}`, 400},
		{"matte too many points", "POST", mURL, "application/json", `{"points": [` + strings.Repeat(`[5, 5, 1],`, 100) + `[5, 5, 1]]}`, 400},
		{"matte reversed box", "POST", mURL, "application/json", `{"box": [100, 10, 20, 2]}`, 400},
		{"matte box off the image", "POST", mURL, "application/json", `{"box": [200, 20, 300, 40]}`, 400},
		{"matte box of 3 numbers", "POST", mURL, "application/json", `{"box": [1, 2, 3]}`, 400},
		{"matte huge box", "POST", mURL, "application/json", `{"box": [-1e300, 0, 1e300, 5]}`, 400},
		{"matte bad mode", "POST", mURL, "application/json", `{"box": [1, 1, 9, 9], "mode": "fancy"}`, 400},
		{"matte bad output", "POST", mURL, "application/json", `{"box": [1, 1, 9, 9], "output": "jpeg"}`, 400},
		{"matte output twice", "POST", mURL, "application/json", `{"box": [1, 1, 9, 9], "output": ["alpha", "alpha"], "format": "json"}`, 400},
		{"matte bad format", "POST", mURL, "application/json", `{"box": [1, 1, 9, 9], "format": "gif"}`, 400},
		{"matte png with two outputs", "POST", mURL, "application/json", `{"box": [1, 1, 9, 9], "output": ["alpha", "mask"]}`, 400},
		{"matte logits as png", "POST", mURL, "application/json", `{"box": [1, 1, 9, 9], "return_logits": true}`, 400},
		{"matte background without composite", "POST", mURL, "application/json", `{"box": [1, 1, 9, 9], "background": "#00ff00"}`, 400},
		{"matte bad background", "POST", mURL, "application/json", `{"box": [1, 1, 9, 9], "output": "composite", "background": "mauve-ish"}`, 400},
		{"matte unknown mask_from", "POST", mURL, "application/json", `{"mask_from": "0123456789abcdef0123456789abcdef"}`, 404},
		{"matte malformed mask_from", "POST", mURL, "application/json", `{"mask_from": "nope"}`, 404},
		{"matte mask_logits not base64", "POST", mURL, "application/json", `{"mask_logits": "!!!"}`, 400},
		{"matte mask_logits wrong size", "POST", mURL, "application/json", `{"mask_logits": "AAAA"}`, 400},
		{"matte mask_logits NaN", "POST", mURL, "application/json", `{"mask_logits": "` + nanLogits() + `"}`, 400},
		{"matte both masks", "POST", mURL, "application/json", `{"mask_logits": "` + logits + `", "mask_from": "0123456789abcdef0123456789abcdef"}`, 400},
		{"matte text prompt", "POST", mURL, "application/json", `{"text": "the dog"}`, 400},
		{"matte not JSON", "POST", mURL, "text/plain", `{"box": [1, 1, 9, 9]}`, 415},
		{"matte JSON over the limit", "POST", mURL, "application/json", `{"text": "` + strings.Repeat("a", maxJSONBytes) + `"}`, 413},
		// results
		{"result unknown", "GET", "/api/images/" + id + "/results/0123456789abcdef0123456789abcdef", "", "", 404},
		{"result of unknown image", "GET", "/api/images/0123456789abcdef0123456789abcdef/results/0123456789abcdef0123456789abcdef", "", "", 404},
		// rembg
		{"remove without file", "POST", "/api/remove", "", multi(nil, map[string]string{"om": "true"}), 400},
		{"remove not an image", "POST", "/api/remove", "", multi([]byte("GIF89a\x01"), nil), 400},
		{"remove unknown format", "POST", "/api/remove", "", multi([]byte("plain text"), nil), 415},
		{"remove over the size limit", "POST", "/api/remove", "", multi(noise, nil), 413},
		{"remove over the pixel limit", "POST", "/api/remove", "", multi(big, nil), 413},
		{"remove bad bgc", "POST", "/api/remove?bgc=red", "", multi(small, nil), 400},
		{"remove bgc out of range", "POST", "/api/remove", "", multi(small, map[string]string{"bgc": "0,0,300,255"}), 400},
		{"remove bad af", "POST", "/api/remove", "", multi(small, map[string]string{"af": "999"}), 400},
		{"remove bad om", "POST", "/api/remove", "", multi(small, map[string]string{"om": "maybe"}), 400},
		{"remove bad box", "POST", "/api/remove", "", multi(small, map[string]string{"box": "1,2,3"}), 400},
		{"remove box off the image", "POST", "/api/remove", "", multi(small, map[string]string{"box": "500,500,600,600"}), 400},
		{"remove bad points", "POST", "/api/remove", "", multi(small, map[string]string{"points": "1,2,3,4"}), 400},
		{"remove point label 5", "POST", "/api/remove", "", multi(small, map[string]string{"points": "1,2,5"}), 400},
		{"remove bad mode", "POST", "/api/remove", "", multi(small, map[string]string{"mode": "x"}), 400},
		{"remove bad extras", "POST", "/api/remove?extras=%7Bnot", "", multi(small, nil), 400},
		{"remove bad sam_prompt", "POST", "/api/remove", "", multi(small, map[string]string{"extras": `{"sam_prompt": [{"type": "circle", "data": [1]}]}`}), 400},
		{"remove field too large", "POST", "/api/remove", "", multi(small, map[string]string{"extras": strings.Repeat(" ", maxFieldBytes+10)}), 413},
		{"remove from a URL", "GET", "/api/remove?url=http://169.254.169.254/latest", "", "", 400},
		// routing
		{"wrong method", "PUT", "/api/images", "", "", 405},
		{"wrong method on remove", "DELETE", "/api/remove", "", "", 405},
		{"unknown endpoint", "GET", "/api/nope", "", "", 404},
		{"post the page", "POST", "/", "", "", 405},
		{"unknown file", "GET", "/nope.html", "", "", 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body *bytes.Buffer
			ct := tc.ct
			switch v := tc.body.(type) {
			case string:
				body = bytes.NewBufferString(v)
			case []byte:
				body = bytes.NewBuffer(v)
			case func() (*bytes.Buffer, string):
				body, ct = v()
			}
			resp, b := do(t, tc.method, ts.URL+tc.path, ct, body)
			if resp.StatusCode != tc.status {
				t.Fatalf("%d %s, want %d", resp.StatusCode, b, tc.status)
			}
			if strings.HasPrefix(tc.path, "/api/") {
				e := errorOf(t, b)
				if e.Status != tc.status {
					t.Errorf("body status %d", e.Status)
				}
				t.Log(e.Error)
			}
		})
	}
	// The server still works, and nothing is left waiting.
	resp, b := do(t, "POST", ts.URL+mURL, "application/json", jsonBody(t, `{"box": [40, 1, 120, 15]}`))
	if resp.StatusCode != 200 {
		t.Fatalf("after the errors: %d %s", resp.StatusCode, b)
	}
	// The handler frees its place after the response is written, so the
	// client may see the response first.
	waitFor(t, func() bool { return len(s.lim.admit) == 0 }, "every admitted request to leave")
}

func nanLogits() string {
	b := make([]byte, 4*64*64)
	copy(b, []byte{0, 0, 0xc0, 0x7f}) // NaN
	return base64.StdEncoding.EncodeToString(b)
}

func TestRemove(t *testing.T) {
	m := tinyModel(t)
	_, ts := newTestServer(t, Config{})
	data := pngBytes(t, testImg)
	whole := prompt{Box: &box{0, 0, 160, 16}, Mode: "postprocess"}
	for _, tc := range []struct {
		name   string
		path   string
		fields map[string]string
		raw    bool
		check  func(t *testing.T, img image.Image)
	}{
		{"default: whole image box", "/api/remove", nil, false, func(t *testing.T, img image.Image) {
			sameNRGBA(t, img, libraryCutout(t, m, testImg, whole))
		}},
		{"rembg fields ignored", "/api/remove", map[string]string{"model": "u2net", "a": "true", "af": "240", "ab": "10", "ae": "10", "ppm": "true"}, false, func(t *testing.T, img image.Image) {
			sameNRGBA(t, img, libraryCutout(t, m, testImg, whole))
		}},
		{"raw body", "/api/remove", nil, true, func(t *testing.T, img image.Image) {
			sameNRGBA(t, img, libraryCutout(t, m, testImg, whole))
		}},
		{"only mask", "/api/remove", map[string]string{"om": "true"}, false, func(t *testing.T, img image.Image) {
			g, ok := img.(*image.Gray)
			if !ok {
				t.Fatalf("om: %T, want gray", img)
			}
			samePix(t, "mask", g.Pix, libraryAlpha(t, m, testImg, whole))
		}},
		{"bgc in the query", "/api/remove?bgc=0,0,255,255", nil, false, func(t *testing.T, img image.Image) {
			b := img.Bounds()
			for y := b.Min.Y; y < b.Max.Y; y++ {
				for x := b.Min.X; x < b.Max.X; x++ {
					if _, _, _, a := img.At(x, y).RGBA(); a != 0xffff {
						t.Fatalf("bgc: pixel (%d, %d) has alpha %d", x, y, a)
					}
				}
			}
		}},
		{"box and points", "/api/remove", map[string]string{"box": "40,1,120,15", "points": "80,8,1;10,8,0", "mode": "maskguide"}, false, func(t *testing.T, img image.Image) {
			sameNRGBA(t, img, libraryCutout(t, m, testImg, prompt{Box: testBox, Points: []point{testPoint, {10, 8, 0}}, Mode: "maskguide"}))
		}},
		{"points without labels", "/api/remove", map[string]string{"points": "80,8"}, false, func(t *testing.T, img image.Image) {
			sameNRGBA(t, img, libraryCutout(t, m, testImg, prompt{Points: []point{testPoint}, Mode: "postprocess"}))
		}},
		{"rembg sam_prompt", "/api/remove", map[string]string{"extras": `{"sam_prompt": [{"type": "point", "data": [80, 8], "label": 1}, {"type": "rectangle", "data": [40, 1, 120, 15]}]}`}, false, func(t *testing.T, img image.Image) {
			sameNRGBA(t, img, libraryCutout(t, m, testImg, prompt{Box: testBox, Points: []point{testPoint}, Mode: "postprocess"}))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var resp *http.Response
			var b []byte
			if tc.raw {
				resp, b = do(t, "POST", ts.URL+tc.path, "image/png", bytes.NewReader(data))
			} else {
				body, ct := form(t, data, tc.fields)
				resp, b = do(t, "POST", ts.URL+tc.path, ct, body)
			}
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			img := decodePNG(t, b)
			if img.Bounds() != testImg.Bounds() {
				t.Fatalf("%v", img.Bounds())
			}
			tc.check(t, img)
		})
	}
	// The same image again: its embedding comes from the cache.
	body, ct := form(t, data, nil)
	resp, b := do(t, "POST", ts.URL+"/api/remove", ct, body)
	if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "hit" {
		t.Fatalf("%d X-Cache %q %s", resp.StatusCode, resp.Header.Get("X-Cache"), b)
	}
	// The content-hash keys are not image ids of the JSON API.
	resp, _ = do(t, "GET", ts.URL+"/api/images/sha256:x", "", nil)
	if resp.StatusCode != 404 {
		t.Errorf("sha256 key as id: %d", resp.StatusCode)
	}
}

func sameNRGBA(t *testing.T, got image.Image, want *image.NRGBA) {
	t.Helper()
	g, ok := got.(*image.NRGBA)
	if !ok {
		t.Fatalf("%T, want NRGBA", got)
	}
	if !bytes.Equal(g.Pix, want.Pix) {
		for i := range g.Pix {
			if g.Pix[i] != want.Pix[i] {
				t.Fatalf("byte %d = %d, library %d", i, g.Pix[i], want.Pix[i])
			}
		}
	}
}

func TestAuth(t *testing.T) {
	_, ts := newTestServer(t, Config{Token: "s3cret"})
	data := pngBytes(t, testImg)
	for _, tc := range []struct {
		name, method, path, auth string
		status                   int
	}{
		{"upload without token", "POST", "/api/images", "", 401},
		{"upload with a wrong token", "POST", "/api/images", "Bearer nope", 401},
		{"upload with the token as basic", "POST", "/api/images", "Basic s3cret", 401},
		{"upload with the token", "POST", "/api/images", "Bearer s3cret", 201},
		{"remove without token", "POST", "/api/remove", "", 401},
		{"remove with the token", "POST", "/api/remove", "Bearer s3cret", 200},
		{"image without token", "GET", "/api/images/0123456789abcdef0123456789abcdef", "", 401},
		{"metrics without token", "GET", "/metrics", "", 401},
		{"metrics with the token", "GET", "/metrics", "Bearer s3cret", 200},
		{"page", "GET", "/", "", 200},
		{"script", "GET", "/app.js", "", 200},
		{"info", "GET", "/api/info", "", 200},
		{"openapi", "GET", "/api/openapi.yaml", "", 200},
		{"healthz", "GET", "/healthz", "", 200},
		{"readyz", "GET", "/readyz", "", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, ct := form(t, data, nil)
			resp, b := do(t, tc.method, ts.URL+tc.path, ct, body, "Authorization", tc.auth)
			if resp.StatusCode != tc.status {
				t.Fatalf("%d %s, want %d", resp.StatusCode, b, tc.status)
			}
			if tc.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

// TestBusy fills slots and queue: further requests get 503 with
// Retry-After at once.
func TestBusy(t *testing.T) {
	s, ts := newTestServer(t, Config{Slots: 1, Queue: 1, RetryAfter: 3 * time.Second})
	id := uploadImage(t, ts.URL, pngBytes(t, testImg))
	s.lim.admit <- struct{}{} // two requests admitted elsewhere
	s.lim.admit <- struct{}{}
	for _, tc := range []struct{ name, method, path, ct, body string }{
		{"upload", "POST", "/api/images", "image/png", string(pngBytes(t, testImg))},
		{"matte", "POST", "/api/images/" + id + "/matte", "application/json", `{"box": [40, 1, 120, 15]}`},
		{"remove", "POST", "/api/remove", "image/png", string(pngBytes(t, testImg))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			resp, b := do(t, tc.method, ts.URL+tc.path, tc.ct, strings.NewReader(tc.body))
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "3" {
				t.Fatalf("%d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("refused after %v: want at once", d)
			}
		})
	}
	<-s.lim.admit
	<-s.lim.admit
	resp, b := do(t, "POST", ts.URL+"/api/images/"+id+"/matte", "application/json", strings.NewReader(`{"box": [40, 1, 120, 15]}`))
	if resp.StatusCode != 200 {
		t.Fatalf("after: %d %s", resp.StatusCode, b)
	}
	if !strings.Contains(metricsText(t, ts.URL), `mam_rejected_total{reason="busy"} 3`) {
		t.Error("mam_rejected_total busy is not 3")
	}
}

// TestTimeout: a request that waits for a slot past the timeout gets 503
// with Retry-After in time, and leaves nothing behind.
func TestTimeout(t *testing.T) {
	s, ts := newTestServer(t, Config{Slots: 1, Queue: 4, Timeout: 300 * time.Millisecond})
	id := uploadImage(t, ts.URL, pngBytes(t, testImg))
	s.lim.slots <- struct{}{} // the slot is busy
	start := time.Now()
	resp, b := do(t, "POST", ts.URL+"/api/images/"+id+"/matte", "application/json", strings.NewReader(`{"box": [40, 1, 120, 15]}`))
	d := time.Since(start)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if d < 300*time.Millisecond || d > 3*time.Second {
		t.Errorf("answered after %v, timeout 300ms", d)
	}
	<-s.lim.slots
	waitFor(t, func() bool { return len(s.lim.admit) == 0 && s.lim.waiting.Load() == 0 }, "the queue to empty")
	if !strings.Contains(metricsText(t, ts.URL), `mam_rejected_total{reason="timeout"} 1`) {
		t.Error("timeout not counted")
	}
}

// TestClientGone: a client that disconnects while its request waits or
// runs cancels it; the server counts a 499 and frees its place.
func TestClientGone(t *testing.T) {
	s, ts := newTestServer(t, Config{Slots: 1, Queue: 4})
	id := uploadImage(t, ts.URL, pngBytes(t, testImg))
	s.lim.slots <- struct{}{}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/api/images/"+id+"/matte", strings.NewReader(`{"box": [40, 1, 120, 15]}`))
	req.Header.Set("Content-Type", "application/json")
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, func() bool { return s.lim.waiting.Load() == 1 }, "the request to queue")
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("the request ended without error")
	}
	waitFor(t, func() bool { return len(s.lim.admit) == 0 && s.lim.waiting.Load() == 0 }, "the queue to empty")
	<-s.lim.slots
	waitFor(t, func() bool {
		return strings.Contains(metricsText(t, ts.URL), `mam_http_requests_total{code="499",method="POST",route="POST /api/images/{id}/matte"} 1`)
	}, "a 499 in the metrics")
}

// TestLimiterAbandoned: work that outlives its request keeps its slot and
// its place in the queue until it ends; a panic is an error.
func TestLimiterAbandoned(t *testing.T) {
	met, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	l := newLimiter(1, 0, met)
	tk, ok := l.tryAdmit()
	if !ok {
		t.Fatal("not admitted")
	}
	if _, ok := l.tryAdmit(); ok {
		t.Fatal("admitted beyond slots + queue")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	release := make(chan struct{})
	_, err = l.run(ctx, tk, func(context.Context) error { <-release; return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	tk.release() // the handler is done; the work is not
	if len(l.slots) != 1 || len(l.admit) != 1 {
		t.Fatalf("slots %d, admitted %d while the work runs", len(l.slots), len(l.admit))
	}
	close(release)
	waitFor(t, func() bool { return len(l.slots) == 0 && len(l.admit) == 0 }, "the slot to be freed")

	tk, _ = l.tryAdmit()
	_, err = l.run(context.Background(), tk, func(context.Context) error { panic("boom") })
	if !errors.Is(err, errInternalErr) {
		t.Fatalf("panic: got %v", err)
	}
	tk.release()
	waitFor(t, func() bool { return len(l.slots) == 0 && len(l.admit) == 0 }, "the slot to be freed")
}

func TestDrain(t *testing.T) {
	s, ts := newTestServer(t, Config{})
	id := uploadImage(t, ts.URL, pngBytes(t, testImg))
	s.Drain()
	if !s.Draining() {
		t.Fatal("not draining")
	}
	for _, tc := range []struct{ name, method, path, ct, body string }{
		{"upload", "POST", "/api/images", "image/png", string(pngBytes(t, testImg))},
		{"matte", "POST", "/api/images/" + id + "/matte", "application/json", `{"box": [40, 1, 120, 15]}`},
		{"remove", "POST", "/api/remove", "image/png", string(pngBytes(t, testImg))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := do(t, tc.method, ts.URL+tc.path, tc.ct, strings.NewReader(tc.body))
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
		})
	}
	if resp, _ := do(t, "GET", ts.URL+"/readyz", "", nil); resp.StatusCode != 503 {
		t.Errorf("readyz %d while draining", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", ts.URL+"/healthz", "", nil); resp.StatusCode != 200 {
		t.Errorf("healthz %d while draining", resp.StatusCode)
	}
}

func metricsText(t testing.TB, base string) string {
	t.Helper()
	resp, b := do(t, "GET", base+"/metrics", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	return string(b)
}

func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestMetrics(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	id := uploadImage(t, ts.URL, pngBytes(t, testImg))
	do(t, "POST", ts.URL+"/api/images/"+id+"/matte", "application/json", strings.NewReader(`{"box": [40, 1, 120, 15]}`))
	do(t, "GET", ts.URL+"/api/images/ffffffffffffffffffffffffffffffff", "", nil)
	do(t, "BREW", ts.URL+"/api/images", "", nil)
	wants := []string{
		`mam_http_requests_total{code="201",method="POST",route="POST /api/images"} 1`,
		`mam_http_requests_total{code="200",method="POST",route="POST /api/images/{id}/matte"} 1`,
		`method="OTHER"`,
		`mam_http_request_duration_seconds_bucket{route="POST /api/images",le=`,
		`mam_stage_duration_seconds_count{stage="encode"} 1`,
		`mam_stage_duration_seconds_count{stage="decode"} 1`,
		`mam_stage_duration_seconds_count{stage="matte"} 1`,
		`mam_stage_duration_seconds_count{stage="png"} 1`,
		`mam_stage_duration_seconds_count{stage="queue"} 2`,
		"mam_queue_depth 0",
		"mam_inference_running 0",
		"mam_inference_slots 2",
		"mam_cache_hits_total 1",
		"mam_cache_misses_total 1",
		"mam_cache_images 1",
		"mam_cache_limit_bytes 1.073741824e+09",
		"mam_cache_bytes ",
		"go_goroutines ",
		"process_resident_memory_bytes ",
	}
	// A request is counted when its handler returns, which may be after
	// the client has read the response: look again for a while.
	var missing []string
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		text := metricsText(t, ts.URL)
		missing = missing[:0]
		for _, want := range wants {
			if !strings.Contains(text, want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 || time.Now().After(end) {
			break
		}
	}
	for _, want := range missing {
		t.Errorf("metrics lack %q", want)
	}
}

// TestCache: the cache stays within its bound in bytes, evicting the least
// recently used image (404 afterwards); an image too large for it is 413.
func TestCache(t *testing.T) {
	m := tinyModel(t)
	eng, _ := newEngine(m)
	x, err := eng.encode(context.Background(), testImg)
	if err != nil {
		t.Fatal(err)
	}
	one := newEntry("x", testImg, x).base
	limit := one * 5 / 2 // two images and some results
	s, ts := newTestServer(t, Config{CacheBytes: limit})
	a := uploadImage(t, ts.URL, pngBytes(t, thinImage(160, 16, 2)))
	b := uploadImage(t, ts.URL, pngBytes(t, thinImage(160, 16, 3)))
	matte := func(id string) int {
		resp, _ := do(t, "POST", ts.URL+"/api/images/"+id+"/matte", "application/json", strings.NewReader(`{"box": [40, 1, 120, 15]}`))
		return resp.StatusCode
	}
	if matte(a) != 200 { // a is now the most recently used
		t.Fatal("matte a")
	}
	c := uploadImage(t, ts.URL, pngBytes(t, thinImage(160, 16, 4))) // evicts b
	if got := matte(b); got != 404 {
		t.Errorf("evicted image: %d, want 404", got)
	}
	for i := 0; i < 6; i++ {
		if matte(a) != 200 || matte(c) != 200 {
			t.Fatal("matte a, c")
		}
		if used := s.CacheBytes(); used > limit {
			t.Fatalf("cache holds %d bytes, limit %d", used, limit)
		}
	}
	text := metricsText(t, ts.URL)
	if !strings.Contains(text, "mam_cache_evictions_total 1") {
		t.Error("eviction not counted")
	}
	// An image larger than the whole cache.
	_, ts2 := newTestServer(t, Config{CacheBytes: one / 2})
	body, ct := form(t, pngBytes(t, testImg), nil)
	resp, msg := do(t, "POST", ts2.URL+"/api/images", ct, body)
	if resp.StatusCode != 413 {
		t.Fatalf("too large for the cache: %d %s", resp.StatusCode, msg)
	}
	// rembg answers it all the same, without caching it.
	body, ct = form(t, pngBytes(t, testImg), nil)
	if resp, msg := do(t, "POST", ts2.URL+"/api/remove", ct, body); resp.StatusCode != 200 {
		t.Fatalf("remove, too large for the cache: %d %s", resp.StatusCode, msg)
	}
}

func TestStatic(t *testing.T) {
	_, ts := newTestServer(t, Config{})
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/", "text/html", "Matting Anything"},
		{"/app.js", "javascript", "api/images"},
		{"/style.css", "text/css", "canvas"},
		{"/api/openapi.yaml", "application/yaml", "openapi: 3"},
		{"/api/info", "application/json", `"modes":["postprocess","maskguide","plain"]`},
		{"/healthz", "text/plain", "ok"},
		{"/readyz", "text/plain", "ready"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, b := do(t, "GET", ts.URL+tc.path, "", nil)
			if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), tc.ctype) || !strings.Contains(string(b), tc.contains) {
				t.Fatalf("%d %q %.200s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
			if tc.path == "/" && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
				t.Error("the page has no content security policy")
			}
		})
	}
	var in info
	_, b := do(t, "GET", ts.URL+"/api/info", "", nil)
	if err := json.Unmarshal(b, &in); err != nil || in.Model != "tiny" || in.TextPrompts || in.Limits.Slots != DefaultSlots {
		t.Errorf("info %+v (%v)", in, err)
	}
}

// TestConcurrentSameImage mattes one image from many goroutines (the
// session is shared): every answer is the library's.
func TestConcurrentSameImage(t *testing.T) {
	m := tinyModel(t)
	_, ts := newTestServer(t, Config{Slots: 3, Queue: 32})
	id := uploadImage(t, ts.URL, pngBytes(t, testImg))
	want := map[int][]uint8{}
	xs := []float64{30, 80, 130}
	for i, x := range xs {
		want[i] = libraryAlpha(t, m, testImg, prompt{Points: []point{{x, 8, 1}}, Mode: "postprocess"})
	}
	n := 6
	if raceEnabled {
		n = 3
	}
	errc := make(chan error, n)
	for g := 0; g < n; g++ {
		go func(g int) {
			i := g % len(xs)
			req := fmt.Sprintf(`{"points": [[%v, 8, 1]]}`, xs[i])
			resp, err := http.Post(ts.URL+"/api/images/"+id+"/matte", "application/json", strings.NewReader(req))
			if err != nil {
				errc <- err
				return
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			buf.ReadFrom(resp.Body)
			if resp.StatusCode != 200 {
				errc <- fmt.Errorf("%d %s", resp.StatusCode, buf.Bytes())
				return
			}
			img, ok := decodePNGErr(buf.Bytes())
			if !ok || !bytes.Equal(img.Pix, want[i]) {
				errc <- fmt.Errorf("goroutine %d: the matte differs from the library's", g)
				return
			}
			errc <- nil
		}(g)
	}
	for g := 0; g < n; g++ {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

func decodePNGErr(b []byte) (*image.Gray, bool) {
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, false
	}
	g, ok := img.(*image.Gray)
	return g, ok
}

func TestOver(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 3, 1))
	copy(img.Pix, []uint8{200, 100, 0, 255, 200, 100, 0, 255, 200, 100, 0, 255})
	r := resultForTest(3, 1, []float32{0, 0.5, 1})
	for _, tc := range []struct {
		bg   color.NRGBA
		want []uint8
	}{
		{color.NRGBA{0, 0, 255, 255}, []uint8{0, 0, 255, 255, 100, 50, 128, 255, 200, 100, 0, 255}},
		{color.NRGBA{0, 0, 255, 0}, []uint8{0, 0, 0, 0, 200, 100, 0, 128, 200, 100, 0, 255}},
	} {
		got := over(r, img, tc.bg)
		if !bytes.Equal(got.Pix, tc.want) {
			t.Errorf("over %v: %v, want %v", tc.bg, got.Pix, tc.want)
		}
	}
}

// TestClientGoneRunning: a client that disconnects while its matte runs
// stops the model's work (the matte stage never completes) and frees the
// slot.
func TestClientGoneRunning(t *testing.T) {
	s, ts := newTestServer(t, Config{Slots: 1, Queue: 1})
	id := uploadImage(t, ts.URL, dogPNG(t)) // 240x160: M2M takes a while
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/api/images/"+id+"/matte", strings.NewReader(`{"points": [[120, 80, 1]]}`))
	req.Header.Set("Content-Type", "application/json")
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, func() bool { return len(s.lim.slots) == 1 }, "the matte to start")
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("the request ended without error")
	}
	waitFor(t, func() bool { return len(s.lim.slots) == 0 && len(s.lim.admit) == 0 }, "the slot to be freed")
	text := metricsText(t, ts.URL)
	if strings.Contains(text, `mam_stage_duration_seconds_count{stage="matte"}`) {
		t.Error("the matte ran to its end after the client went away")
	}
	waitFor(t, func() bool {
		return strings.Contains(metricsText(t, ts.URL), `code="499",method="POST",route="POST /api/images/{id}/matte"} 1`)
	}, "a 499 in the metrics")
}
