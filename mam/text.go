package mam

// Text prompts: GroundingDINO turns a caption into boxes, as Matting
// Anything's demo does (gradio_app.py, task "text"): referring matting
// (the best box), instance matting (every box) and semantic matting (all
// of them as one matte).

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/mam-go/mam-go/gdino"
)

var (
	// ErrNoDetector: a text prompt on a model loaded without a detector.
	ErrNoDetector = errors.New("no text detector: load the model WithDetector")
	// ErrNoDetection: no box matched the text above the box threshold. It
	// is gdino.ErrNoDetection.
	ErrNoDetection = gdino.ErrNoDetection
)

// WithDetector makes Load also read a GroundingDINO checkpoint
// (groundingdino_swint_ogc.pth as released) and BERT's vocab.txt, for text
// prompts (Prompt.Text).
func WithDetector(checkpoint, vocab string) Option {
	return func(c *loadConfig) { c.gdinoPath, c.vocabTxt = checkpoint, vocab }
}

// WithGroundingDINO gives Load or New a detector already loaded (for text
// prompts), for example one shared by several models.
func WithGroundingDINO(d *gdino.Detector) Option {
	return func(c *loadConfig) { c.detector = d }
}

// WithThresholds sets the text prompt's detection thresholds: a box is kept
// when its score is above box, a token is in its phrase when its
// probability is above text, and NMS drops boxes overlapping a better one
// by more than nms (MAM's demo: 0.25, 0.25, 0.5).
func WithThresholds(box, text, nms float32) MatteOption {
	return func(c *matteConfig) {
		c.detect = gdino.PostprocessOptions{BoxThreshold: box, TextThreshold: text, NMSThreshold: nms}
	}
}

// Detect finds the boxes a caption describes in the session's image, after
// NMS and highest score first (the detector's image side is computed at
// the first call and kept for the next ones; the last caption's result is
// kept too, and given again for the same caption and thresholds, as a text
// prompt corrected with points needs). Only WithThresholds applies among
// opts.
func (s *Session) Detect(ctx context.Context, caption string, opts ...MatteOption) (*gdino.Result, error) {
	mc, err := options(opts)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.detect(ctx, caption, &mc)
}

// detect runs the detector on the session's image; s.mu must be held.
func (s *Session) detect(ctx context.Context, caption string, mc *matteConfig) (*gdino.Result, error) {
	d := s.m.Detector
	if d == nil {
		return nil, fmt.Errorf("mam: text prompt %q: %w", caption, ErrNoDetector)
	}
	if err := checkThresholds(mc.detect); err != nil {
		return nil, err
	}
	if c := s.lastDet; c != nil && c.caption == caption && c.opts == mc.detect {
		return cloneResult(c.res), nil
	}
	if s.detImg == nil {
		im, err := d.Encode(ctx, s.img, gdino.Options{})
		if err != nil {
			return nil, fmt.Errorf("mam: %w", err)
		}
		s.detImg = im
	}
	r, err := s.detImg.Detect(ctx, caption, gdino.Options{PostprocessOptions: mc.detect})
	if err != nil {
		return nil, fmt.Errorf("mam: %w", err)
	}
	s.lastDet = &cachedDetection{caption: caption, opts: mc.detect, res: cloneResult(r)}
	return r, nil
}

// cloneResult copies r's slices, so that a caller changing its result
// does not change the session's copy.
func cloneResult(r *gdino.Result) *gdino.Result {
	c := *r
	c.Detections = slices.Clone(r.Detections)
	c.All = slices.Clone(r.All)
	c.Tokens = slices.Clone(r.Tokens)
	return &c
}

func checkThresholds(o gdino.PostprocessOptions) error {
	for _, v := range []float32{o.BoxThreshold, o.TextThreshold, o.NMSThreshold} {
		if !(v >= 0 && v <= 1) {
			return fmt.Errorf("mam: threshold %v is not in [0, 1]: %w", v, ErrBadPrompt)
		}
	}
	return nil
}

// detectionBox is a detection's box as SAM's box prompt: the detector's
// float32 pixels, unclipped, as the demo passes them.
func detectionBox(d gdino.Detection) *Box {
	return &Box{X0: float64(d.Box[0]), Y0: float64(d.Box[1]), X1: float64(d.Box[2]), Y1: float64(d.Box[3])}
}

// MatteInstances is instance matting from text: one matte for every box
// the caption's detection keeps after NMS, highest score first, each
// Result's Detection saying which box (and phrase) it is. p.Text is the
// caption; p's points and mask are added to every box's prompt. No box
// above the threshold is an empty slice, not an error.
func (s *Session) MatteInstances(ctx context.Context, p Prompt, opts ...MatteOption) ([]*Result, error) {
	dets, err := s.detections(ctx, p, opts)
	if err != nil {
		return nil, err
	}
	out := make([]*Result, 0, len(dets))
	for i, det := range dets {
		q := p
		q.Text, q.Box = "", detectionBox(det)
		r, err := s.Matte(ctx, q, opts...)
		if err != nil {
			return nil, fmt.Errorf("mam: detection %d: %w", i, err)
		}
		d := det
		r.Detection = &d
		out = append(out, r)
	}
	return out, nil
}

// detections validates a text prompt and runs the detector.
func (s *Session) detections(ctx context.Context, p Prompt, opts []MatteOption) ([]gdino.Detection, error) {
	if p.Text == "" {
		return nil, fmt.Errorf("mam: instance and semantic matting need a text prompt: %w", ErrNoPrompt)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	r, err := s.Detect(ctx, p.Text, opts...)
	if err != nil {
		return nil, err
	}
	return r.Detections, nil
}

// MatteSemantic is semantic matting from text: the mattes of every box the
// caption's detection keeps, merged into one (the pixelwise maximum of the
// alphas, the union of the masks). The Result's Detection is the best box;
// IoU, Scores and LowRes are those of the best box's matte. No box above
// the threshold is ErrNoDetection.
func (s *Session) MatteSemantic(ctx context.Context, p Prompt, opts ...MatteOption) (*Result, error) {
	rs, err := s.MatteInstances(ctx, p, opts...)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("mam: text %q: %w", p.Text, ErrNoDetection)
	}
	return Union(rs), nil
}

// MattePhrases is semantic matting per phrase, for captions naming several
// kinds of object ("cat . dog ."): the instance mattes grouped by the
// phrase each box matched, each group merged as MatteSemantic does, in the
// order of each phrase's best box.
func (s *Session) MattePhrases(ctx context.Context, p Prompt, opts ...MatteOption) (map[string]*Result, []string, error) {
	rs, err := s.MatteInstances(ctx, p, opts...)
	if err != nil {
		return nil, nil, err
	}
	groups := map[string][]*Result{}
	var order []string
	for _, r := range rs {
		ph := r.Detection.Phrase
		if _, ok := groups[ph]; !ok {
			order = append(order, ph)
		}
		groups[ph] = append(groups[ph], r)
	}
	out := make(map[string]*Result, len(groups))
	for ph, g := range groups {
		out[ph] = Union(g)
	}
	return out, order, nil
}

// Union merges mattes of one image into one: the pixelwise maximum of the
// alphas and the union of the masks; the other fields are the first
// Result's. It returns nil for no results.
func Union(rs []*Result) *Result {
	if len(rs) == 0 {
		return nil
	}
	u := *rs[0]
	u.Alpha, u.Mask = slices.Clone(u.Alpha), slices.Clone(u.Mask)
	for _, r := range rs[1:] {
		for i, a := range r.Alpha {
			u.Alpha[i] = max(u.Alpha[i], a)
		}
		for i, m := range r.Mask {
			u.Mask[i] = max(u.Mask[i], m)
		}
	}
	return &u
}
