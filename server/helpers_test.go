package server

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// newTestServer serves the tiny model with cfg (Model filled in).
func newTestServer(t testing.TB, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	if cfg.Model == nil {
		cfg.Model = tinyModel(t)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts
}

// thinImage is a w x h test photo: a wide strip keeps SAM's resized input
// (and so the M2M work) small, so tests run fast even under -race.
func thinImage(w, h int, seed int64) *image.NRGBA {
	rng := rand.New(rand.NewSource(seed))
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := uint8(rng.Intn(40)) + uint8(x*180/w)
			in := x > w/4 && x < 3*w/4
			c := color.NRGBA{v, 255 - v, uint8(y * 255 / h), 255}
			if in {
				c = color.NRGBA{230, 200 - v/2, 40, 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	return img
}

func pngBytes(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func dogPNG(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(testutil.Golden("tiny", "dog_240", "image.png"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// form is a multipart body with the file in field "file" (none when nil)
// and other fields.
func form(t testing.TB, file []byte, fields map[string]string) (io.Reader, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range fields {
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if file != nil {
		fw, err := mw.CreateFormFile("file", "image.png")
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(file)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return &b, mw.FormDataContentType()
}

// do sends a request and returns the answer with its body read.
func do(t testing.TB, method, url, contentType string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// uploadImage posts an image to /api/images and returns its id.
func uploadImage(t testing.TB, base string, data []byte, hdr ...string) string {
	t.Helper()
	body, ct := form(t, data, nil)
	resp, b := do(t, "POST", base+"/api/images", ct, body, hdr...)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d %s", resp.StatusCode, b)
	}
	var ii imageInfo
	if err := json.Unmarshal(b, &ii); err != nil {
		t.Fatal(err)
	}
	return ii.ID
}

func jsonBody(t testing.TB, v any) io.Reader {
	t.Helper()
	if s, ok := v.(string); ok {
		return bytes.NewReader([]byte(s))
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}

func decodePNG(t testing.TB, b []byte) image.Image {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG (%d bytes: %.200q): %v", len(b), b, err)
	}
	return img
}

// grayPix returns a decoded gray PNG's pixels.
func grayPix(t testing.TB, b []byte) []uint8 {
	t.Helper()
	g, ok := decodePNG(t, b).(*image.Gray)
	if !ok {
		t.Fatalf("not an 8-bit gray PNG")
	}
	return g.Pix
}

// samePix fails when got and want differ.
func samePix(t testing.TB, what string, got, want []uint8) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d pixels, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: pixel %d = %d, library %d", what, i, got[i], want[i])
		}
	}
}

// errorOf decodes an error answer.
func errorOf(t testing.TB, b []byte) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
		t.Fatalf("not a JSON error: %q", b)
	}
	return e
}
