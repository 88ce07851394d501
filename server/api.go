package server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// begin admits a request that will run the model: refused with 503 while
// draining or when slots and queue are full. It returns the request's
// context, bounded by the timeout, and its ticket; the caller must call
// cancel and t.release.
func (s *Server) begin(w http.ResponseWriter, r *http.Request) (ctx context.Context, cancel context.CancelFunc, t *ticket, err error) {
	if s.draining.Load() {
		return nil, nil, nil, fmt.Errorf("%w: not taking new requests", errDraining)
	}
	t, ok := s.lim.tryAdmit()
	if !ok {
		return nil, nil, nil, fmt.Errorf("%w: all %d inference slots and the queue of %d are taken", errBusy, s.cfg.Slots, s.cfg.Queue)
	}
	ctx, cancel = context.WithTimeout(r.Context(), s.cfg.Timeout)
	// A client that sends its body too slowly must not hold its place past
	// the timeout (a little later, so that a stalled read is not taken for
	// a client that went away).
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.cfg.Timeout + 2*time.Second))
	return ctx, cancel, t, nil
}

// fail answers an error of a request that ran (or waited for) the model.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, ctx context.Context, err error) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
	case ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		err = ctxError(r, ctx)
	case isPromptError(err), isImageError(err):
		err = errorf(http.StatusBadRequest, "%v", err)
	}
	s.writeError(w, r, err)
}

// isID says whether id has the form of an image or result id.
func isID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// lookup finds a cached image by the id in the path.
func (s *Server) lookup(r *http.Request) (*entry, error) {
	id := r.PathValue("id")
	if !isID(id) {
		return nil, errorf(http.StatusNotFound, "unknown image id %q", truncate(id, 64))
	}
	e, ok := s.cache.get(id)
	if !ok {
		return nil, errorf(http.StatusNotFound, "unknown image id %s: never uploaded, deleted or evicted from the cache; upload it again", id)
	}
	return e, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// imageInfo is the answer of POST /api/images and GET /api/images/{id}.
type imageInfo struct {
	ID         string   `json:"id"`
	Width      int      `json:"width"`
	Height     int      `json:"height"`
	CacheBytes int64    `json:"cache_bytes"`
	Results    []string `json:"results,omitempty"`
	QueueMS    float64  `json:"queue_ms,omitempty"`
	DecodeMS   float64  `json:"decode_ms,omitempty"`
	EncodeMS   float64  `json:"encode_ms,omitempty"`
}

// handleUpload is POST /api/images: decode and encode an image, cache it.
func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
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
	if _, err := s.checkImage(up.data); err != nil {
		s.writeError(w, r, err)
		return
	}
	var (
		e              *entry
		decode, encode time.Duration
	)
	queued, err := s.lim.run(ctx, t, func(ctx context.Context) error {
		start := time.Now()
		img, err := s.decodeImage(up.data)
		decode = s.met.time(stageDecode, start)
		if err != nil {
			return err
		}
		start = time.Now()
		enc, err := s.eng.encode(ctx, img)
		if err != nil {
			return err
		}
		encode = s.met.time(stageEncode, start)
		if err := ctx.Err(); err != nil {
			return err // nobody waits for it: do not fill the cache
		}
		e = newEntry(newID(), img, enc)
		return s.cache.add(e)
	})
	if err != nil {
		s.fail(w, r, ctx, err)
		return
	}
	w.Header().Set("Location", "/api/images/"+e.id)
	w.Header().Set("Server-Timing", fmt.Sprintf("queue;dur=%.1f, decode;dur=%.1f, encode;dur=%.1f", ms(queued), ms(decode), ms(encode)))
	writeJSON(w, http.StatusCreated, imageInfo{ID: e.id, Width: e.width(), Height: e.height(), CacheBytes: e.base,
		QueueMS: ms(queued), DecodeMS: ms(decode), EncodeMS: ms(encode)})
}

// handleGetImage is GET /api/images/{id}.
func (s *Server) handleGetImage(w http.ResponseWriter, r *http.Request) {
	e, err := s.lookup(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	info := imageInfo{ID: e.id, Width: e.width(), Height: e.height()}
	s.cache.mu.Lock()
	info.CacheBytes = e.size()
	for _, st := range e.results {
		info.Results = append(info.Results, st.id)
	}
	s.cache.mu.Unlock()
	writeJSON(w, http.StatusOK, info)
}

// handleDeleteImage is DELETE /api/images/{id}.
func (s *Server) handleDeleteImage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !isID(id) || !s.cache.remove(id) {
		s.writeError(w, r, errorf(http.StatusNotFound, "unknown image id %q", truncate(id, 64)))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// matteAnswer is the JSON answer of a matte.
type matteAnswer struct {
	ImageID  string             `json:"image_id"`
	ResultID string             `json:"result_id"`
	Width    int                `json:"width"`
	Height   int                `json:"height"`
	IoU      float32            `json:"iou"`
	Mode     string             `json:"mode"`
	Timings  map[string]float64 `json:"timings_ms"`
	Images   map[string]string  `json:"images"`
	Logits   string             `json:"logits,omitempty"`
	Side     int                `json:"logits_side,omitempty"`
}

// handleMatte is POST /api/images/{id}/matte.
func (s *Server) handleMatte(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, t, err := s.begin(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer t.release()
	defer cancel()
	var req matteRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	e, err := s.lookup(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, from, specs, err := s.matteInput(&req, e)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var (
		st                    *stored
		pngs                  = make([][]byte, len(specs))
		logits                []float32
		tLogits, tMatte, tPNG time.Duration
	)
	queued, err := s.lim.run(ctx, t, func(ctx context.Context) error {
		if err := e.acquire(ctx); err != nil {
			return err
		}
		defer e.unlock()
		if from != nil {
			start := time.Now()
			m, err := s.eng.logits(ctx, e.enc, from.p)
			if err != nil {
				return err
			}
			p.Mask = m
			tLogits = s.met.time(stageLogits, start)
		}
		start := time.Now()
		res, err := s.eng.matte(ctx, e.enc, p)
		if err != nil {
			return err
		}
		tMatte = s.met.time(stageMatte, start)
		if req.ReturnLogits {
			logits = res.logits()
		}
		start = time.Now()
		for i, rs := range specs {
			if pngs[i], err = renderPNG(res, e.img, rs); err != nil {
				return err
			}
		}
		tPNG = s.met.time(stagePNG, start)
		st = &stored{id: newID(), res: res, p: p}
		s.cache.addResult(e, st)
		return nil
	})
	if err != nil {
		s.fail(w, r, ctx, err)
		return
	}
	timing := fmt.Sprintf("queue;dur=%.1f, matte;dur=%.1f, png;dur=%.1f", ms(queued), ms(tMatte), ms(tPNG))
	if from != nil {
		timing += fmt.Sprintf(", logits;dur=%.1f", ms(tLogits))
	}
	h := w.Header()
	h.Set("Server-Timing", timing)
	h.Set("X-Image-Id", e.id)
	h.Set("X-Result-Id", st.id)
	h.Set("X-IoU", strconv.FormatFloat(float64(st.res.iou()), 'f', 4, 32))
	if req.Format == "json" {
		ans := matteAnswer{ImageID: e.id, ResultID: st.id, Width: st.res.width(), Height: st.res.height(),
			IoU: st.res.iou(), Mode: st.res.mode(), Images: map[string]string{},
			Timings: map[string]float64{"queue": ms(queued), "matte": ms(tMatte), "png": ms(tPNG)}}
		if from != nil {
			ans.Timings["logits"] = ms(tLogits)
		}
		for i, rs := range specs {
			ans.Images[rs.kind] = "data:image/png;base64," + base64.StdEncoding.EncodeToString(pngs[i])
		}
		if logits != nil {
			ans.Logits, ans.Side = encodeLogits(logits), s.eng.logitsSide()
		}
		writeJSON(w, http.StatusOK, ans)
		return
	}
	h.Set("Content-Type", "image/png")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(pngs[0])))
	w.Write(pngs[0])
}

// matteInput validates a matte request against its image.
func (s *Server) matteInput(req *matteRequest, e *entry) (p prompt, from *stored, specs []renderSpec, err error) {
	for _, pt := range req.Points {
		p.Points = append(p.Points, point{X: pt.X, Y: pt.Y, Label: pt.Label})
	}
	if b := req.Box; b != nil {
		p.Box = &box{X0: b.X0, Y0: b.Y0, X1: b.X1, Y1: b.Y1}
	}
	p.Text = strings.TrimSpace(req.Text)
	if err := checkPrompt(&p, e.width(), e.height()); err != nil {
		return p, nil, nil, err
	}
	if p.Text != "" && !s.eng.textPrompts() {
		return p, nil, nil, errorf(http.StatusBadRequest, "text prompts are not supported by this server's model yet: use points or a box")
	}
	if req.MaskFrom != "" && req.MaskLogits != "" {
		return p, nil, nil, errorf(http.StatusBadRequest, "give mask_from or mask_logits, not both")
	}
	if req.MaskFrom != "" {
		var ok bool
		if isID(req.MaskFrom) {
			from, ok = s.cache.result(e, req.MaskFrom)
		}
		if !ok {
			return p, nil, nil, errorf(http.StatusNotFound, "mask_from: no result %q of image %s (only its %d most recent results are kept)", truncate(req.MaskFrom, 64), e.id, s.cfg.ResultsPerImage)
		}
	}
	if req.MaskLogits != "" {
		if p.Mask, err = decodeLogits(req.MaskLogits, s.eng.logitsSide()); err != nil {
			return p, nil, nil, err
		}
	}
	if len(p.Points) == 0 && p.Box == nil && p.Mask == nil && from == nil && p.Text == "" {
		return p, nil, nil, errorf(http.StatusBadRequest, "empty prompt: give points, a box, mask_from or mask_logits")
	}
	p.Mode = req.Mode
	if p.Mode == "" {
		p.Mode = modes[0]
	}
	if !contains(modes, p.Mode) {
		return p, nil, nil, errorf(http.StatusBadRequest, "mode %q: want one of %v", req.Mode, modes)
	}
	switch req.Format {
	case "", "png":
		req.Format = "png"
		if len(req.Output) > 1 {
			return p, nil, nil, errorf(http.StatusBadRequest, "format png sends one output, got %d: use format json for several", len(req.Output))
		}
		if req.ReturnLogits {
			return p, nil, nil, errorf(http.StatusBadRequest, "return_logits needs format json")
		}
	case "json":
	default:
		return p, nil, nil, errorf(http.StatusBadRequest, "format %q: want png or json", req.Format)
	}
	outs := req.Output
	if len(outs) == 0 {
		outs = outputList{"alpha"}
	}
	if len(outs) > len(outputKinds) {
		return p, nil, nil, errorf(http.StatusBadRequest, "%d outputs: at most %d", len(outs), len(outputKinds))
	}
	seen := map[string]bool{}
	for _, o := range outs {
		bg := ""
		if o == "composite" {
			bg = req.Background
		}
		rs, err := parseRender(o, bg)
		if err != nil {
			return p, nil, nil, err
		}
		if seen[rs.kind] {
			return p, nil, nil, errorf(http.StatusBadRequest, "output %q asked twice", o)
		}
		seen[rs.kind] = true
		specs = append(specs, rs)
	}
	if req.Background != "" && !seen["composite"] {
		return p, nil, nil, errorf(http.StatusBadRequest, "background is for output composite")
	}
	return p, from, specs, nil
}

func contains(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

// handleResult is GET /api/images/{id}/results/{rid}?output=...&background=...:
// a kept result drawn again, without running the model.
func (s *Server) handleResult(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, t, err := s.begin(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer t.release()
	defer cancel()
	e, err := s.lookup(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rid := r.PathValue("rid")
	var st *stored
	ok := false
	if isID(rid) {
		st, ok = s.cache.result(e, rid)
	}
	if !ok {
		s.writeError(w, r, errorf(http.StatusNotFound, "no result %q of image %s (only its %d most recent results are kept)", truncate(rid, 64), e.id, s.cfg.ResultsPerImage))
		return
	}
	q := r.URL.Query()
	rs, err := parseRender(q.Get("output"), q.Get("background"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var data []byte
	if _, err := s.lim.run(ctx, t, func(ctx context.Context) error {
		start := time.Now()
		var err error
		data, err = renderPNG(st.res, e.img, rs)
		s.met.time(stagePNG, start)
		return err
	}); err != nil {
		s.fail(w, r, ctx, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "image/png")
	h.Set("Cache-Control", "private, max-age=3600")
	if q.Get("download") != "" {
		h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", rs.kind+".png"))
	}
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}

// info is the answer of GET /api/info.
type info struct {
	Model       string   `json:"model"`
	InputSize   int      `json:"input_size"`
	Modes       []string `json:"modes"`
	Outputs     []string `json:"outputs"`
	TextPrompts bool     `json:"text_prompts"`
	Auth        bool     `json:"auth"`
	LogitsSide  int      `json:"logits_side"`
	Limits      struct {
		MaxUploadBytes  int64   `json:"max_upload_bytes"`
		MaxPixels       int64   `json:"max_pixels"`
		CacheBytes      int64   `json:"cache_bytes"`
		Slots           int     `json:"slots"`
		Queue           int     `json:"queue"`
		TimeoutS        float64 `json:"timeout_s"`
		ResultsPerImage int     `json:"results_per_image"`
		MaxPoints       int     `json:"max_points"`
	} `json:"limits"`
}

// handleInfo is GET /api/info: what the page and clients need to know.
func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) {
	var in info
	in.Model, in.InputSize, in.LogitsSide = s.eng.name(), s.eng.inputSize(), s.eng.logitsSide()
	in.Modes, in.Outputs, in.TextPrompts = modes, outputKinds, s.eng.textPrompts()
	in.Auth = s.cfg.Token != ""
	l := &in.Limits
	l.MaxUploadBytes, l.MaxPixels, l.CacheBytes = s.cfg.MaxUploadBytes, s.cfg.MaxPixels, s.cfg.CacheBytes
	l.Slots, l.Queue, l.TimeoutS = s.cfg.Slots, s.cfg.Queue, s.cfg.Timeout.Seconds()
	l.ResultsPerImage, l.MaxPoints = s.cfg.ResultsPerImage, maxPoints
	writeJSON(w, http.StatusOK, in)
}
