package server

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// maxCoord bounds prompt coordinates: beyond it they are surely a mistake.
const maxCoord = 1e6

// jsonPoint is a point of a matte request: {"x": 10, "y": 20, "label": 1}
// or [10, 20, 1] (label 1 foreground, 0 background; 1 when left out).
type jsonPoint struct {
	X, Y  float64
	Label int
}

// UnmarshalJSON reads the object or the array form.
func (p *jsonPoint) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var v []float64
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("a point is [x, y] or [x, y, label]: %w", err)
		}
		if len(v) != 2 && len(v) != 3 {
			return fmt.Errorf("a point is [x, y] or [x, y, label], got %d numbers", len(v))
		}
		p.X, p.Y, p.Label = v[0], v[1], 1
		if len(v) == 3 {
			if v[2] != 0 && v[2] != 1 {
				return fmt.Errorf("point label %v: want 1 (foreground) or 0 (background)", v[2])
			}
			p.Label = int(v[2])
		}
		return nil
	}
	var o struct {
		X     *float64 `json:"x"`
		Y     *float64 `json:"y"`
		Label *int     `json:"label"`
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&o); err != nil {
		return fmt.Errorf("a point is {\"x\": X, \"y\": Y, \"label\": 0 or 1}: %w", err)
	}
	if o.X == nil || o.Y == nil {
		return errors.New("a point needs x and y")
	}
	p.X, p.Y, p.Label = *o.X, *o.Y, 1
	if o.Label != nil {
		p.Label = *o.Label
	}
	return nil
}

// jsonBox is a box: {"x0": 1, "y0": 2, "x1": 3, "y1": 4} or [1, 2, 3, 4].
type jsonBox struct{ X0, Y0, X1, Y1 float64 }

// UnmarshalJSON reads the object or the array form.
func (bx *jsonBox) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var v []float64
		if err := json.Unmarshal(b, &v); err != nil || len(v) != 4 {
			return errors.New("a box is [x0, y0, x1, y1]")
		}
		*bx = jsonBox{v[0], v[1], v[2], v[3]}
		return nil
	}
	var o struct {
		X0 *float64 `json:"x0"`
		Y0 *float64 `json:"y0"`
		X1 *float64 `json:"x1"`
		Y1 *float64 `json:"y1"`
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&o); err != nil {
		return fmt.Errorf("a box is {\"x0\", \"y0\", \"x1\", \"y1\"} or [x0, y0, x1, y1]: %w", err)
	}
	if o.X0 == nil || o.Y0 == nil || o.X1 == nil || o.Y1 == nil {
		return errors.New("a box needs x0, y0, x1 and y1")
	}
	*bx = jsonBox{*o.X0, *o.Y0, *o.X1, *o.Y1}
	return nil
}

// outputList is one output kind or a list of them.
type outputList []string

// UnmarshalJSON reads "alpha" or ["alpha", "mask"].
func (o *outputList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*o = outputList{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return errors.New("output is a string or a list of strings")
	}
	*o = l
	return nil
}

// matteRequest is the body of POST /api/images/{id}/matte.
type matteRequest struct {
	Points       []jsonPoint `json:"points"`
	Box          *jsonBox    `json:"box"`
	MaskFrom     string      `json:"mask_from"`
	MaskLogits   string      `json:"mask_logits"`
	Text         string      `json:"text"`
	Mode         string      `json:"mode"`
	Output       outputList  `json:"output"`
	Format       string      `json:"format"`
	Background   string      `json:"background"`
	ReturnLogits bool        `json:"return_logits"`
}

// Output kinds.
var outputKinds = []string{"alpha", "alpha16", "mask", "cutout", "composite", "greenscreen"}

// decodeJSON reads a JSON body strictly: bounded, no unknown fields, one
// value.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return errorf(http.StatusUnsupportedMediaType, "the request body is JSON: Content-Type application/json, not %q", ct)
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxJSONBytes)
	d := json.NewDecoder(r.Body)
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return errorf(http.StatusRequestEntityTooLarge, "the JSON body is over %d bytes", mbe.Limit)
		case errors.Is(err, io.EOF):
			return errorf(http.StatusBadRequest, "empty body: want a JSON object")
		case errors.As(err, &se):
			return errorf(http.StatusBadRequest, "malformed JSON at byte %d: %v", se.Offset, se)
		case errors.As(err, &te):
			return errorf(http.StatusBadRequest, "JSON field %q: want %v, got %s", te.Field, te.Type, te.Value)
		}
		return errorf(http.StatusBadRequest, "bad JSON: %v", err)
	}
	if d.More() {
		return errorf(http.StatusBadRequest, "bad JSON: more than one value in the body")
	}
	if _, err := d.Token(); err != io.EOF {
		return errorf(http.StatusBadRequest, "bad JSON: data after the object")
	}
	return nil
}

// checkPrompt validates points and a box against a w x h image: finite
// coordinates, labels 0 or 1, points on the image, a box with x0 < x1 and
// y0 < y1 that overlaps it.
func checkPrompt(p *prompt, w, h int) error {
	if len(p.Points) > maxPoints {
		return errorf(http.StatusBadRequest, "%d points: at most %d", len(p.Points), maxPoints)
	}
	for i, pt := range p.Points {
		if !finite(pt.X) || !finite(pt.Y) {
			return errorf(http.StatusBadRequest, "point %d (%v, %v) is not finite", i, pt.X, pt.Y)
		}
		if pt.X < 0 || pt.Y < 0 || pt.X > float64(w) || pt.Y > float64(h) {
			return errorf(http.StatusBadRequest, "point %d (%v, %v) is outside the %dx%d image", i, pt.X, pt.Y, w, h)
		}
		if pt.Label != 0 && pt.Label != 1 {
			return errorf(http.StatusBadRequest, "point %d has label %d: want 1 (foreground) or 0 (background)", i, pt.Label)
		}
	}
	if b := p.Box; b != nil {
		for _, v := range []float64{b.X0, b.Y0, b.X1, b.Y1} {
			if !finite(v) || math.Abs(v) > maxCoord {
				return errorf(http.StatusBadRequest, "box (%v, %v, %v, %v): coordinates must be finite numbers of pixels", b.X0, b.Y0, b.X1, b.Y1)
			}
		}
		if b.X1 <= b.X0 || b.Y1 <= b.Y0 {
			return errorf(http.StatusBadRequest, "box (%v, %v, %v, %v): want x0 < x1 and y0 < y1", b.X0, b.Y0, b.X1, b.Y1)
		}
		if b.X1 <= 0 || b.Y1 <= 0 || b.X0 >= float64(w) || b.Y0 >= float64(h) {
			return errorf(http.StatusBadRequest, "box (%v, %v, %v, %v) does not overlap the %dx%d image", b.X0, b.Y0, b.X1, b.Y1, w, h)
		}
	}
	if len(p.Text) > 1000 {
		return errorf(http.StatusBadRequest, "text prompt of %d bytes: at most 1000", len(p.Text))
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// decodeLogits reads mask logits sent as base64 of little-endian float32.
func decodeLogits(s string, side int) ([]float32, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "mask_logits: not base64: %v", err)
	}
	if len(b) != side*side*4 {
		return nil, errorf(http.StatusBadRequest, "mask_logits: %d bytes, want %dx%d little-endian float32 = %d", len(b), side, side, side*side*4)
	}
	out := make([]float32, side*side)
	for i := range out {
		v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		if !finite(float64(v)) {
			return nil, errorf(http.StatusBadRequest, "mask_logits: value %d is %v", i, v)
		}
		out[i] = v
	}
	return out, nil
}

// encodeLogits writes mask logits as base64 of little-endian float32.
func encodeLogits(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// parseFloats reads n comma-separated numbers.
func parseFloats(s string, n int) ([]float64, error) {
	parts := strings.Split(s, ",")
	if len(parts) != n {
		return nil, fmt.Errorf("want %d comma-separated numbers, got %d", n, len(parts))
	}
	out := make([]float64, n)
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || !finite(v) {
			return nil, fmt.Errorf("%q is not a number", strings.TrimSpace(p))
		}
		out[i] = v
	}
	return out, nil
}

// parsePoints reads "x,y,label;x,y,label" (label 1 when left out).
func parsePoints(s string) ([]point, error) {
	var out []point
	for _, item := range strings.Split(s, ";") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		n := strings.Count(item, ",") + 1
		if n != 2 && n != 3 {
			return nil, fmt.Errorf("point %q: want x,y or x,y,label", item)
		}
		v, err := parseFloats(item, n)
		if err != nil {
			return nil, fmt.Errorf("point %q: %v", item, err)
		}
		pt := point{X: v[0], Y: v[1], Label: 1}
		if n == 3 {
			if v[2] != 0 && v[2] != 1 {
				return nil, fmt.Errorf("point %q: label %v, want 1 (foreground) or 0 (background)", item, v[2])
			}
			pt.Label = int(v[2])
		}
		out = append(out, pt)
		if len(out) > maxPoints {
			return nil, fmt.Errorf("more than %d points", maxPoints)
		}
	}
	return out, nil
}
