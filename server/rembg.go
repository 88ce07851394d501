package server

// rembg's HTTP API (rembg s): POST /api/remove with the image in the
// multipart field "file" answers the RGBA cutout as PNG.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// rembgOptions are the fields of a rembg request that this server uses.
type rembgOptions struct {
	onlyMask bool
	bgc      *color.NRGBA
	points   []point
	box      *box
	mode     string
}

// rembgParams reads rembg's fields from the form, then the query string
// (rembg reads bgc and extras from the query, the others from the form).
// model, a, af, ab, ae and ppm are checked as rembg checks them and
// otherwise ignored: MAM always mattes, and refines its own mask.
func rembgParams(form map[string]string, query url.Values) (*rembgOptions, error) {
	get := func(k string) (string, bool) {
		if v, ok := form[k]; ok {
			return v, true
		}
		if query.Has(k) {
			return query.Get(k), true
		}
		return "", false
	}
	bad := func(format string, args ...any) error {
		return errorf(http.StatusBadRequest, format, args...)
	}
	o := &rembgOptions{mode: modes[0]}
	for _, k := range []string{"a", "om", "ppm"} {
		v, ok := get(k)
		if !ok {
			continue
		}
		b, err := parseBool(v)
		if err != nil {
			return nil, bad("field %s: %q is not a boolean", k, v)
		}
		if k == "om" {
			o.onlyMask = b
		}
	}
	for _, k := range []string{"af", "ab", "ae"} {
		v, ok := get(k)
		if !ok {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || (k != "ae" && n > 255) {
			return nil, bad("field %s: %q: want an integer in [0, 255]", k, v)
		}
	}
	if v, ok := get("bgc"); ok && strings.TrimSpace(v) != "" {
		parts := strings.Split(v, ",")
		if len(parts) != 3 && len(parts) != 4 {
			return nil, bad("field bgc %q: want r,g,b,a", v)
		}
		c := [4]uint8{0, 0, 0, 255}
		for i, p := range parts {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil || n < 0 || n > 255 {
				return nil, bad("field bgc %q: want r,g,b,a integers in [0, 255]", v)
			}
			c[i] = uint8(n)
		}
		o.bgc = &color.NRGBA{c[0], c[1], c[2], c[3]}
	}
	if v, ok := get("mode"); ok && v != "" {
		if !contains(modes, v) {
			return nil, bad("field mode %q: want one of %v", v, modes)
		}
		o.mode = v
	}
	if v, ok := get("box"); ok && strings.TrimSpace(v) != "" {
		f, err := parseFloats(v, 4)
		if err != nil {
			return nil, bad("field box %q: want x0,y0,x1,y1: %v", v, err)
		}
		o.box = &box{f[0], f[1], f[2], f[3]}
	}
	if v, ok := get("points"); ok && strings.TrimSpace(v) != "" {
		pts, err := parsePoints(v)
		if err != nil {
			return nil, bad("field points: %v", err)
		}
		o.points = pts
	}
	if v, ok := get("extras"); ok && strings.TrimSpace(v) != "" {
		if err := o.extras(v); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// extras reads rembg's extras JSON: its sam_prompt (rembg's SAM session:
// [{"type": "point", "data": [x, y], "label": 1}, {"type": "rectangle",
// "data": [x0, y0, x1, y1]}]) adds to the prompt; other keys are ignored.
func (o *rembgOptions) extras(v string) error {
	var ex struct {
		SAMPrompt []struct {
			Type  string    `json:"type"`
			Data  []float64 `json:"data"`
			Label *int      `json:"label"`
		} `json:"sam_prompt"`
	}
	if err := json.Unmarshal([]byte(v), &ex); err != nil {
		return errorf(http.StatusBadRequest, "field extras: not the JSON rembg takes: %v", err)
	}
	for i, sp := range ex.SAMPrompt {
		switch sp.Type {
		case "point":
			if len(sp.Data) != 2 {
				return errorf(http.StatusBadRequest, "extras sam_prompt %d: a point's data is [x, y]", i)
			}
			label := 1
			if sp.Label != nil {
				label = *sp.Label
			}
			o.points = append(o.points, point{X: sp.Data[0], Y: sp.Data[1], Label: label})
		case "rectangle":
			if len(sp.Data) != 4 {
				return errorf(http.StatusBadRequest, "extras sam_prompt %d: a rectangle's data is [x0, y0, x1, y1]", i)
			}
			if o.box != nil {
				return errorf(http.StatusBadRequest, "extras sam_prompt %d: one box per request", i)
			}
			o.box = &box{sp.Data[0], sp.Data[1], sp.Data[2], sp.Data[3]}
		default:
			return errorf(http.StatusBadRequest, "extras sam_prompt %d: type %q: want point or rectangle", i, sp.Type)
		}
	}
	return nil
}

// parseBool reads a boolean as FastAPI does.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "on", "yes", "t", "y":
		return true, nil
	case "0", "false", "off", "no", "f", "n", "":
		return false, nil
	}
	return false, errors.New("not a boolean")
}

// handleRemove is POST /api/remove, rembg's endpoint. The image's
// embedding is cached under the hash of its bytes, so prompting the same
// image again skips the encoder.
func (s *Server) handleRemove(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, t, err := s.begin(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer t.release()
	defer cancel()
	up, err := s.readUpload(w, r, s.cfg.MaxUploadBytes)
	if err != nil {
		s.fail(w, r, ctx, err)
		return
	}
	opt, err := rembgParams(up.fields, r.URL.Query())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	cfg, err := s.checkImage(up.data)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p := prompt{Points: opt.points, Box: opt.box, Mode: opt.mode}
	if p.Box == nil && len(p.Points) == 0 {
		p.Box = &box{0, 0, float64(cfg.Width), float64(cfg.Height)}
	}
	if err := checkPrompt(&p, cfg.Width, cfg.Height); err != nil {
		s.writeError(w, r, err)
		return
	}
	sum := sha256.Sum256(up.data)
	key := "sha256:" + hex.EncodeToString(sum[:])
	var (
		data                           []byte
		hit                            bool
		tDecode, tEncode, tMatte, tPNG time.Duration
	)
	queued, err := s.lim.run(ctx, t, func(ctx context.Context) error {
		e, ok := s.cache.get(key)
		hit = ok
		if !ok {
			start := time.Now()
			img, err := s.decodeImage(up.data)
			tDecode = s.met.time(stageDecode, start)
			if err != nil {
				return err
			}
			start = time.Now()
			enc, err := s.eng.encode(ctx, img)
			if err != nil {
				return err
			}
			tEncode = s.met.time(stageEncode, start)
			e = newEntry(key, img, enc)
			if err := s.cache.add(e); err != nil && !errors.Is(err, errTooLarge) {
				return err // too large for the cache: answer it all the same
			}
		}
		if err := e.acquire(ctx); err != nil {
			return err
		}
		defer e.unlock()
		start := time.Now()
		res, err := s.eng.matte(ctx, e.enc, p)
		if err != nil {
			return err
		}
		tMatte = s.met.time(stageMatte, start)
		start = time.Now()
		var out image.Image
		switch {
		case opt.onlyMask:
			out = alphaImage(res)
		case opt.bgc != nil:
			out = over(res, e.img, *opt.bgc)
		default:
			if out, err = cutoutImage(res, e.img); err != nil {
				return err
			}
		}
		data, err = encodePNG(out)
		tPNG = s.met.time(stagePNG, start)
		return err
	})
	if err != nil {
		s.fail(w, r, ctx, err)
		return
	}
	h := w.Header()
	h.Set("Server-Timing", fmt.Sprintf("queue;dur=%.1f, decode;dur=%.1f, encode;dur=%.1f, matte;dur=%.1f, png;dur=%.1f",
		ms(queued), ms(tDecode), ms(tEncode), ms(tMatte), ms(tPNG)))
	h.Set("X-Cache", map[bool]string{true: "hit", false: "miss"}[hit])
	h.Set("Content-Type", "image/png")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}

// handleRemoveGet is GET /api/remove. rembg fetches the image from the url
// parameter; this server does not fetch URLs (a server-side request
// forgery risk): POST the file instead.
func (s *Server) handleRemoveGet(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, errorf(http.StatusBadRequest, "this server does not fetch images from URLs: POST the image to /api/remove in the multipart field \"file\""))
}
