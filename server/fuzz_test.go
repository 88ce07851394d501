package server

import (
	"bytes"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzMatteRequest: whatever the body of a matte request, parsing and
// validation answer a 4xx or a prompt the engine can take.
func FuzzMatteRequest(f *testing.F) {
	for _, s := range []string{
		`{"box": [40, 1, 120, 15]}`, `{"points": [[80, 8, 1], {"x": 3, "y": 4, "label": 0}]}`,
		`{"points": [[80, 8]], "mode": "plain", "output": ["alpha", "mask"], "format": "json"}`,
		`{"box": {"x0": 1, "y0": 2, "x1": 3, "y1": 4}, "output": "composite", "background": "#102030"}`,
		`{"mask_logits": "AAAA"}`, `{"text": "x"}`, `{"points": [[1e308, -1e308, 1]]}`, `[]`, `null`, `{"box": null}`,
	} {
		f.Add(s)
	}
	s, err := New(Config{Model: tinyModel(f)})
	if err != nil {
		f.Fatal(err)
	}
	e := &entry{id: "0123456789abcdef0123456789abcdef", img: image.NewNRGBA(image.Rect(0, 0, 160, 16))}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/api/images/x/matte", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		var mr matteRequest
		if err := decodeJSON(httptest.NewRecorder(), req, &mr); err != nil {
			if st := statusOf(err); st < 400 || st >= 500 {
				t.Fatalf("status %d for %v", st, err)
			}
			return
		}
		p, _, specs, err := s.matteInput(&mr, e)
		if err != nil {
			if st := statusOf(err); st < 400 || st >= 500 {
				t.Fatalf("status %d for %v", st, err)
			}
			return
		}
		if len(specs) == 0 || !contains(modes, p.Mode) || len(p.Points) > maxPoints {
			t.Fatalf("accepted %+v with %d outputs", p, len(specs))
		}
		for _, pt := range p.Points {
			if !finite(pt.X) || pt.X < 0 || pt.X > 160 || pt.Y < 0 || pt.Y > 16 || (pt.Label != 0 && pt.Label != 1) {
				t.Fatalf("accepted point %+v", pt)
			}
		}
		if b := p.Box; b != nil && (!(b.X0 < b.X1) || !(b.Y0 < b.Y1) || b.X1 <= 0 || b.X0 >= 160) {
			t.Fatalf("accepted box %+v", *b)
		}
		if p.Mask != nil && len(p.Mask) != 64*64 {
			t.Fatalf("accepted %d mask logits", len(p.Mask))
		}
	})
}

// FuzzRembgParams: whatever the fields, rembg's parameters parse or answer
// 400.
func FuzzRembgParams(f *testing.F) {
	f.Add("true", "0,0,255,255", "1,2,3,4", "1,2,1;3,4,0", `{"sam_prompt": [{"type": "point", "data": [1, 2]}]}`, "af=1&mode=plain")
	f.Add("no", "1,2", "x", ";;;", `{`, "bgc=1,2,3")
	f.Fuzz(func(t *testing.T, om, bgc, box, points, extras, query string) {
		q, _ := url.ParseQuery(query)
		o, err := rembgParams(map[string]string{"om": om, "bgc": bgc, "box": box, "points": points, "extras": extras}, q)
		if err != nil {
			if statusOf(err) != 400 {
				t.Fatalf("status %d for %v", statusOf(err), err)
			}
			return
		}
		if len(o.points) > maxPoints+10 || !contains(modes, o.mode) {
			t.Fatalf("accepted %+v", o)
		}
	})
}

// FuzzDecodeImage: whatever the bytes, checking and decoding answer a 4xx
// or an image within the pixel limit.
func FuzzDecodeImage(f *testing.F) {
	small := image.NewNRGBA(image.Rect(0, 0, 7, 5))
	small.SetNRGBA(3, 2, color.NRGBA{200, 10, 10, 255})
	var pb, gb, jb bytes.Buffer
	pngEncoder.Encode(&pb, small)
	gif.Encode(&gb, small, nil)
	jpeg.Encode(&jb, small, nil)
	for _, b := range [][]byte{pb.Bytes(), gb.Bytes(), jb.Bytes(), []byte("GIF89a"), pb.Bytes()[:40]} {
		f.Add(b)
	}
	s, err := New(Config{Model: tinyModel(f), MaxPixels: 1 << 16})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := s.checkImage(data); err != nil {
			if st := statusOf(err); st < 400 || st >= 500 {
				t.Fatalf("status %d for %v", st, err)
			}
			return
		}
		img, err := s.decodeImage(data)
		if err != nil {
			if st := statusOf(err); st < 400 || st >= 500 {
				t.Fatalf("status %d for %v", st, err)
			}
			return
		}
		if b := img.Bounds(); b.Min != (image.Point{}) || int64(b.Dx())*int64(b.Dy()) > 1<<16 || b.Dx() <= 0 {
			t.Fatalf("decoded %v", b)
		}
	})
}
