// Package mam is the public API of mam-go: Matting Anything in pure Go.
//
// Load a SAM checkpoint and a MAM checkpoint, then ask for the alpha matte
// of the object a prompt (points, a box, a mask, or a mix) designates:
//
//	m, err := mam.Load(ctx, "sam_vit_b_01ec64.pth", "mam_vitb.pth")
//	res, err := m.Matte(ctx, img, mam.Prompt{Box: &mam.Box{X0: 10, Y0: 20, X1: 200, Y1: 300}})
//	err = res.WriteAlphaPNG(w, 8)
//
// Segment Anything finds the object (the best-IoU mask of its three); the
// Mask-to-Matte module (M2M) turns the mask into three mattes (at output
// strides 1, 4 and 8) that the iterative refinement of the reference's
// single_ms_inference merges into the result (see Mode and Refine).
//
// A Session embeds an image once and mattes any number of prompts on it
// (instance matting, or iterative refinement: pass Result.MaskPrompt back
// as the next Prompt's Mask). Session.MatteMask mattes a mask the caller
// already has, skipping SAM's mask decoder.
//
// Concurrency: a Model is safe for concurrent use (its modules serialise
// their runs); a Session is too (its calls are serialised), and Sessions
// of one Model run in parallel except inside a module.
//
// Errors wrap ErrNoPrompt, ErrBadPrompt or ErrBadImage where they apply,
// for errors.Is, and context.Canceled or DeadlineExceeded when the context
// ends.
package mam

import (
	"context"
	"fmt"
	"image"
	"slices"
	"strings"
	"sync"

	"github.com/mam-go/mam-go/gdino"
	"github.com/mam-go/mam-go/m2m"
	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/sam"
	"github.com/mam-go/mam-go/weights"
)

// Model is a loaded Matting Anything model: SAM and the M2M module. It is
// safe for concurrent use.
type Model struct {
	SAM *sam.Model
	M2M *m2m.Decoder
	// Detector turns text prompts into boxes (GroundingDINO); nil when the
	// model was loaded without one.
	Detector *gdino.Detector
}

// Option configures Load and New.
type Option func(*loadConfig)

type loadConfig struct {
	preset              string
	detector            *gdino.Detector
	gdinoPath, vocabTxt string
}

// WithPreset forces the SAM configuration (vit_b, vit_l, vit_h or tiny)
// instead of recognising it from the checkpoint's shapes.
func WithPreset(name string) Option { return func(c *loadConfig) { c.preset = name } }

// Load reads a SAM checkpoint and a MAM checkpoint (.pth as released, or
// their .npz / .npy-directory conversions) and builds the model. The SAM
// variant is recognised from the checkpoint's shapes. It stops with
// ctx.Err() when ctx ends while the checkpoints are read.
func Load(ctx context.Context, samPath, mamPath string, opts ...Option) (*Model, error) {
	ss, err := weights.OpenContext(ctx, samPath)
	if err != nil {
		return nil, fmt.Errorf("mam: SAM checkpoint: %w", err)
	}
	ms, err := weights.OpenContext(ctx, mamPath)
	if err != nil {
		return nil, fmt.Errorf("mam: MAM checkpoint: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var lc loadConfig
	for _, o := range opts {
		o(&lc)
	}
	if lc.gdinoPath != "" && lc.detector == nil {
		d, err := gdino.Load(ctx, lc.gdinoPath, lc.vocabTxt)
		if err != nil {
			return nil, fmt.Errorf("mam: GroundingDINO: %w", err)
		}
		opts = append(opts, WithGroundingDINO(d))
	}
	return New(ss, ms, opts...)
}

// New builds the model from loaded SAM and M2M state dicts.
func New(samStore, mamStore *weights.Store, opts ...Option) (*Model, error) {
	var lc loadConfig
	for _, o := range opts {
		o(&lc)
	}
	if samStore == nil || mamStore == nil {
		return nil, fmt.Errorf("mam: nil weights store")
	}
	var cfg sam.Config
	var err error
	if lc.preset != "" {
		cfg, err = sam.Preset(lc.preset)
	} else {
		cfg, err = sam.DetectConfig(samStore)
	}
	if err != nil {
		return nil, fmt.Errorf("mam: %w", err)
	}
	sm, err := sam.New(samStore, cfg)
	if err != nil {
		return nil, fmt.Errorf("mam: %w", err)
	}
	mcfg, err := m2m.DetectConfig(mamStore)
	if err != nil {
		return nil, fmt.Errorf("mam: %w", err)
	}
	if mcfg.FeatDim != cfg.PromptDim {
		return nil, fmt.Errorf("mam: the MAM checkpoint takes %d-channel image embeddings, the SAM checkpoint (%s) makes %d", mcfg.FeatDim, cfg.Name, cfg.PromptDim)
	}
	dec, err := m2m.New(mamStore, mcfg)
	if err != nil {
		return nil, fmt.Errorf("mam: %w", err)
	}
	if lc.gdinoPath != "" && lc.detector == nil {
		return nil, fmt.Errorf("mam: WithDetector is for Load; give New a loaded detector (WithGroundingDINO)")
	}
	return &Model{SAM: sm, M2M: dec, Detector: lc.detector}, nil
}

// MatteOption configures one Matte call.
type MatteOption func(*matteConfig)

type matteConfig struct {
	mode   Mode
	dump   func(name string, shape []int, data []float32)
	detect gdino.PostprocessOptions
}

// WithMode selects the refinement (PostProcess by default).
func WithMode(m Mode) MatteOption { return func(c *matteConfig) { c.mode = m } }

// WithDump calls fn with every intermediate tensor, its shape and its
// values, under the names of the golden reference data: input,
// image_embeddings, low_res_masks, iou_predictions, masks, guide_mask,
// post_mask, alpha_os1, alpha_os4, alpha_os8 and alpha_<mode> (MatteMask
// dumps those after masks). fn must not modify or keep the values.
func WithDump(fn func(name string, shape []int, data []float32)) MatteOption {
	return func(c *matteConfig) { c.dump = fn }
}

// Session holds one image's embedding, so that several prompts on the same
// image (instance matting, iterative refinement) run the image encoder
// once. It is safe for concurrent use: its calls are serialised.
type Session struct {
	m    *Model
	mu   sync.Mutex
	pred *sam.Predictor

	img    image.Image  // kept for the detector's image side, when there is a detector
	detImg *gdino.Image // the detector's image side, computed at the first text prompt
	// lastDet is the last caption's detection, reused when the same
	// caption comes again with the same thresholds (a text prompt
	// corrected with points, Detect then Matte).
	lastDet *cachedDetection
}

// cachedDetection is a caption's detection with the thresholds it ran at.
type cachedDetection struct {
	caption string
	opts    gdino.PostprocessOptions
	res     *gdino.Result
}

// NewSession runs the image encoder on img.
func (m *Model) NewSession(ctx context.Context, img image.Image) (*Session, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	if err := checkContext(ctx); err != nil {
		return nil, err
	}
	rgb, err := toRGB(img) // in parallel; what p.SetImage would compute
	if err != nil {
		return nil, err
	}
	p := sam.NewPredictor(m.SAM)
	if err := p.SetRGB(ctx, rgb); err != nil {
		return nil, fmt.Errorf("mam: %w", err)
	}
	s := &Session{m: m, pred: p}
	if m.Detector != nil {
		s.img = img
	}
	return s, nil
}

// Predictor exposes the session's SAM predictor (for mask-only use). It is
// not safe for concurrent use, nor to use while a Matte call runs.
func (s *Session) Predictor() *sam.Predictor {
	if s == nil {
		return nil
	}
	return s.pred
}

// Matte returns the matte of img for prompt p: one image encoding, then as
// Session.Matte.
func (m *Model) Matte(ctx context.Context, img image.Image, p Prompt, opts ...MatteOption) (*Result, error) {
	if err := checkImage(img); err != nil {
		return nil, err
	}
	if err := p.ValidateFor(img.Bounds().Dx(), img.Bounds().Dy()); err != nil {
		return nil, err
	}
	s, err := m.NewSession(ctx, img)
	if err != nil {
		return nil, err
	}
	return s.Matte(ctx, p, opts...)
}

// MatteAll mattes several prompts on one image (one matte per instance),
// encoding the image once.
func (m *Model) MatteAll(ctx context.Context, img image.Image, ps []Prompt, opts ...MatteOption) ([]*Result, error) {
	if err := checkImage(img); err != nil {
		return nil, err
	}
	for i, p := range ps {
		if err := p.ValidateFor(img.Bounds().Dx(), img.Bounds().Dy()); err != nil {
			return nil, fmt.Errorf("mam: prompt %d: %w", i, err)
		}
	}
	s, err := m.NewSession(ctx, img)
	if err != nil {
		return nil, err
	}
	out := make([]*Result, len(ps))
	for i, p := range ps {
		if out[i], err = s.Matte(ctx, p, opts...); err != nil {
			return nil, fmt.Errorf("prompt %d: %w", i, err)
		}
	}
	return out, nil
}

// options applies opts over the defaults and checks the mode.
func options(opts []MatteOption) (matteConfig, error) {
	mc := matteConfig{mode: PostProcess, detect: gdino.DefaultPostprocessOptions()}
	for _, o := range opts {
		if o != nil {
			o(&mc)
		}
	}
	_, err := ParseMode(string(mc.mode))
	return mc, err
}

// dumpf calls the dump function, if any.
func (mc *matteConfig) dumpf(name string, shape []int, data []float32) {
	if mc.dump != nil {
		mc.dump(name, shape, data)
	}
}

// Matte decodes p with SAM (the best-IoU mask of three, as MAM does,
// unless p.SingleMask), runs the M2M module on the binarised low-res mask
// and refines its mattes.
func (s *Session) Matte(ctx context.Context, p Prompt, opts ...MatteOption) (*Result, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if err := checkContext(ctx); err != nil {
		return nil, err
	}
	mc, err := options(opts)
	if err != nil {
		return nil, err
	}
	if h, w := s.pred.OriginalSize(); p.ValidateFor(w, h) != nil {
		return nil, p.ValidateFor(w, h)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := p.SAM()
	var det *gdino.Detection
	if p.Text != "" {
		r, err := s.detect(ctx, p.Text, &mc)
		if err != nil {
			return nil, err
		}
		best, err := r.Best()
		if err != nil {
			return nil, fmt.Errorf("mam: text %q: %w", p.Text, err)
		}
		det = &best
		sp.Box = detectionBox(best)
	}
	pr, err := s.pred.Predict(ctx, sp)
	if err != nil {
		return nil, fmt.Errorf("mam: %w", err)
	}
	h, w := s.pred.OriginalSize()
	best := pr.Best()
	mc.dumpf("input", s.pred.Input().Shape, s.pred.Input().Data)
	mc.dumpf("image_embeddings", s.pred.Embeddings().Shape, s.pred.Embeddings().Data)
	mc.dumpf("low_res_masks", pr.LowRes.Shape, pr.LowRes.Data)
	mc.dumpf("iou_predictions", []int{1, len(pr.IoU)}, pr.IoU)
	if mc.dump != nil {
		m := pr.Masks() // computes the masks not used below
		mc.dump("masks", m.Shape, m.Data)
	}

	// guide = best low-res logits > 0 (1, 1, 4E, 4E)
	guide := pr.LowResMask(best)
	for i, v := range guide.Data {
		guide.Data[i] = step(v > 0)
	}
	// post = best full-size logits > 0 (h, w)
	post := make([]uint8, h*w)
	for i, in := range pr.Binary(best) {
		if in {
			post[i] = 1
		}
	}
	res := &Result{Width: w, Height: h, Mask: post, Mode: mc.mode,
		IoU: pr.IoU[best], Scores: slices.Clone(pr.IoU), Index: best, LowRes: pr.LowRes, Detection: det}
	return res, s.matte(ctx, &mc, guide, res)
}

// MatteMask mattes the object of a mask the caller already has (from
// another segmenter, or edited by hand): mask holds one value per pixel of
// the session's image, row-major, non-zero inside. SAM's mask decoder is
// skipped: the mask is the Result's Mask, and M2M's guide is the mask
// brought to SAM's low-res frame as SAM's own masks are (resized to the
// model's input frame, padded, resized to 4E x 4E, thresholded at 0.5).
// The Result has no IoU, Scores or LowRes (Index is -1).
func (s *Session) MatteMask(ctx context.Context, mask []uint8, opts ...MatteOption) (*Result, error) {
	mc, err := options(opts)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h, w := s.pred.OriginalSize()
	if len(mask) != h*w {
		return nil, fmt.Errorf("mam: mask has %d values for the %dx%d image: %w", len(mask), w, h, ErrBadPrompt)
	}
	post := make([]uint8, h*w)
	for i, v := range mask {
		post[i] = min(v, 1)
	}
	mc.dumpf("input", s.pred.Input().Shape, s.pred.Input().Data)
	mc.dumpf("image_embeddings", s.pred.Embeddings().Shape, s.pred.Embeddings().Data)
	res := &Result{Width: w, Height: h, Mask: post, Mode: mc.mode, Index: -1}
	return res, s.matte(ctx, &mc, s.lowResGuide(post), res)
}

// lowResGuide brings a full-size binary mask (h, w) to a binary guide
// (1, 1, 4E, 4E) in SAM's low-res frame.
func (s *Session) lowResGuide(post []uint8) *nn.Tensor {
	h, w := s.pred.OriginalSize()
	newh, neww := s.pred.InputSize()
	size, side := s.m.SAM.ImageSize, 4*s.m.SAM.EmbedSize()
	full := make([]float32, h*w)
	for i, v := range post {
		full[i] = float32(v)
	}
	resized := make([]float32, newh*neww) // ResizeLongestSide
	nn.ResizeBilinearInto(resized, full, 1, h, w, newh, neww)
	padded := make([]float32, size*size) // zero padding to S x S
	for y := 0; y < newh; y++ {
		copy(padded[y*size:y*size+neww], resized[y*neww:(y+1)*neww])
	}
	guide := nn.NewTensor(nil, 1, 1, side, side) // S x S -> 4E x 4E
	nn.ResizeBilinearInto(guide.Data, padded, 1, size, size, side, side)
	for i, v := range guide.Data {
		guide.Data[i] = step(v > 0.5)
	}
	return guide
}

// matte runs M2M on the binary low-res guide and refines its mattes into
// res.Alpha, with res.Mask the full-size binary mask. s.mu must be held.
func (s *Session) matte(ctx context.Context, mc *matteConfig, guide *nn.Tensor, res *Result) error {
	h, w := s.pred.OriginalSize()
	newh, neww := s.pred.InputSize()
	mc.dumpf("guide_mask", guide.Shape, guide.Data)
	if mc.dump != nil {
		postF := make([]float32, h*w)
		for i, v := range res.Mask {
			postF[i] = float32(v)
		}
		mc.dump("post_mask", []int{1, 1, h, w}, postF)
	}

	// Refinement reads the mattes only on the image's region of the padded
	// input: M2M computes just that (the same values), unless the whole
	// mattes are dumped.
	rows, cols := newh, neww
	if mc.dump != nil {
		rows, cols = 0, 0
	}
	out, err := s.m.M2M.ForwardRegion(ctx, s.pred.Embeddings(), s.pred.Input(), guide, rows, cols)
	if err != nil {
		return fmt.Errorf("mam: %w", err)
	}
	mc.dumpf("alpha_os1", out.OS1.Shape, out.OS1.Data)
	mc.dumpf("alpha_os4", out.OS4.Shape, out.OS4.Data)
	mc.dumpf("alpha_os8", out.OS8.Shape, out.OS8.Data)
	if !slices.ContainsFunc(res.Mask, func(v uint8) bool { return v != 0 }) {
		// No object: the matte is empty whatever the refinement.
		res.Alpha = make([]float32, h*w)
	} else {
		S := s.m.SAM.ImageSize
		os1 := CropResize(out.OS1.Data, S, newh, neww, h, w)
		os4 := CropResize(out.OS4.Data, S, newh, neww, h, w)
		os8 := CropResize(out.OS8.Data, S, newh, neww, h, w)
		if os1 == nil || os4 == nil || os8 == nil {
			return fmt.Errorf("mam: M2M output does not fit the image (%dx%d in %d)", neww, newh, S)
		}
		if res.Alpha, err = Refine(mc.mode, os1, os4, os8, res.Mask, h, w); err != nil {
			return err
		}
	}
	mc.dumpf("alpha_"+strings.ToLower(string(mc.mode)), []int{h, w}, res.Alpha)
	return nil
}

// step is 1 for true, 0 for false.
func step(b bool) float32 {
	if b {
		return 1
	}
	return 0
}
