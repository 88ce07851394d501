// Package mam is the public API of mam-go: Matting Anything in pure Go.
//
// Load a SAM checkpoint and a MAM checkpoint, then ask for the alpha matte
// of the object a prompt (a box, points, or both) designates:
//
//	m, err := mam.Load("sam_vit_b_01ec64.pth", "mam_vitb.pth")
//	res, err := m.Matte(ctx, img, mam.Prompt{Box: &mam.Box{X0: 10, Y0: 20, X1: 200, Y1: 300}})
//
// Segment Anything finds the object (its best-IoU multimask output); the
// Mask-to-Matte module turns the mask into three mattes (os1, os4, os8)
// that the iterative refinement of the reference's single_ms_inference
// merges into the result (see Mode). A Session embeds an image once and
// mattes any number of prompts on it, as instance matting does.
package mam

import (
	"context"
	"fmt"
	"image"
	"strings"

	"github.com/mam-go/mam-go/m2m"
	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/sam"
	"github.com/mam-go/mam-go/weights"
	"gorgonia.org/tensor"
)

// Model is a loaded Matting Anything model: SAM and the M2M module.
type Model struct {
	SAM *sam.Model
	M2M *m2m.Decoder
}

// Option configures Load and New.
type Option func(*loadConfig)

type loadConfig struct {
	preset    string
	device    Device
	setDevice bool
}

// WithPreset forces the SAM configuration (vit_b, vit_l, vit_h or tiny)
// instead of recognising it from the checkpoint's shapes.
func WithPreset(name string) Option { return func(c *loadConfig) { c.preset = name } }

// Load reads a SAM checkpoint and a MAM checkpoint (.pth as released, or
// their .npz / .npy-directory conversions) and builds the model. The SAM
// variant is recognised from the checkpoint's shapes.
func Load(samPath, mamPath string, opts ...Option) (*Model, error) {
	ss, err := weights.Open(samPath)
	if err != nil {
		return nil, fmt.Errorf("mam: SAM checkpoint: %w", err)
	}
	ms, err := weights.OpenMAM(mamPath)
	if err != nil {
		return nil, fmt.Errorf("mam: MAM checkpoint: %w", err)
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
	if lc.setDevice {
		install(lc.device)
	}
	return &Model{SAM: sm, M2M: dec}, nil
}

// MatteOption configures one Matte call.
type MatteOption func(*matteConfig)

type matteConfig struct {
	mode Mode
	dump func(name string, t *tensor.Dense)
}

// WithMode selects the refinement (PostProcess by default).
func WithMode(m Mode) MatteOption { return func(c *matteConfig) { c.mode = m } }

// WithDump calls fn with every intermediate tensor, under the names of the
// golden reference data: input, image_embeddings (once per session),
// low_res_masks, iou_predictions, masks, guide_mask, post_mask, alpha_os1,
// alpha_os4, alpha_os8 and alpha_<mode>. The tensors must not be modified.
func WithDump(fn func(name string, t *tensor.Dense)) MatteOption {
	return func(c *matteConfig) { c.dump = fn }
}

// Session holds one image's embedding, so that several prompts on the same
// image (instance matting) run the image encoder once. It is not safe for
// concurrent use.
type Session struct {
	m    *Model
	pred *sam.Predictor
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
	return &Session{m: m, pred: p}, nil
}

// Predictor exposes the session's SAM predictor (for mask-only use).
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
			return nil, fmt.Errorf("prompt %d: %w", i, err)
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

// Matte decodes p with SAM (multimask, best IoU, as MAM does), runs the
// M2M module on the binarised low-res mask and refines its mattes.
func (s *Session) Matte(ctx context.Context, p Prompt, opts ...MatteOption) (*Result, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if err := checkContext(ctx); err != nil {
		return nil, err
	}
	mc := matteConfig{mode: PostProcess}
	for _, o := range opts {
		if o != nil {
			o(&mc)
		}
	}
	if _, err := ParseMode(string(mc.mode)); err != nil {
		return nil, err
	}
	if h, w := s.pred.OriginalSize(); p.ValidateFor(w, h) != nil {
		return nil, p.ValidateFor(w, h)
	}
	dump := func(name string, t *tensor.Dense) {
		if mc.dump != nil {
			mc.dump(name, t)
		}
	}
	in := sam.PromptInput{Multimask: true}
	for _, pt := range p.Points {
		in.Points = append(in.Points, sam.Point{X: pt.X, Y: pt.Y, Label: pt.Label})
	}
	if p.Box != nil {
		in.Box = &sam.Box{X0: p.Box.X0, Y0: p.Box.Y0, X1: p.Box.X1, Y1: p.Box.Y1}
	}
	pr, err := s.pred.Predict(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("mam: %w", err)
	}
	h, w := s.pred.OriginalSize()
	newh, neww := s.pred.InputSize()
	best := pr.Best()
	dump("input", s.pred.Input())
	dump("image_embeddings", s.pred.Embeddings())
	dump("low_res_masks", pr.LowRes)
	dump("iou_predictions", nn.NewDense(pr.IoU, 1, len(pr.IoU)))
	if mc.dump != nil {
		dump("masks", pr.Masks()) // computes the masks not used below
	}

	// guide = best low-res logits > 0 (1, 1, 4E, 4E)
	guide := pr.LowResMask(best)
	gv := nn.F32(guide) // (F32 allocates: once, not per value)
	for i, v := range gv {
		if v > 0 {
			gv[i] = 1
		} else {
			gv[i] = 0
		}
	}
	dump("guide_mask", guide)
	// post = best full-size logits > 0 (h, w)
	post := make([]uint8, h*w)
	for i, in := range pr.Binary(best) {
		if in {
			post[i] = 1
		}
	}
	if mc.dump != nil {
		postF := make([]float32, h*w)
		for i, v := range post {
			postF[i] = float32(v)
		}
		dump("post_mask", nn.NewDense(postF, 1, 1, h, w))
	}
	res := &Result{Width: w, Height: h, Mask: post, IoU: pr.IoU[best], Mode: mc.mode}

	// Refinement reads the mattes only on the image's region of the padded
	// input: M2M computes just that (the same values), unless the whole
	// mattes are dumped.
	rows, cols := newh, neww
	if mc.dump != nil {
		rows, cols = 0, 0
	}
	out, err := s.m.M2M.ForwardRegion(ctx, s.pred.Embeddings(), s.pred.Input(), guide, rows, cols)
	if err != nil {
		return nil, fmt.Errorf("mam: %w", err)
	}
	dump("alpha_os1", out.OS1)
	dump("alpha_os4", out.OS4)
	dump("alpha_os8", out.OS8)
	if !anyNonZero(post) {
		// SAM found no object: the matte is empty whatever the refinement.
		res.Alpha = make([]float32, h*w)
	} else {
		S := s.m.SAM.ImageSize
		os1 := CropResize(nn.F32(out.OS1), S, newh, neww, h, w)
		os4 := CropResize(nn.F32(out.OS4), S, newh, neww, h, w)
		os8 := CropResize(nn.F32(out.OS8), S, newh, neww, h, w)
		if os1 == nil || os4 == nil || os8 == nil {
			return nil, fmt.Errorf("mam: M2M output does not fit the image (%dx%d in %d)", neww, newh, S)
		}
		if res.Alpha, err = Refine(mc.mode, os1, os4, os8, post, h, w); err != nil {
			return nil, err
		}
	}
	dump("alpha_"+strings.ToLower(string(mc.mode)), nn.NewDense(res.Alpha, h, w))
	return res, nil
}

func anyNonZero(m []uint8) bool {
	for _, v := range m {
		if v != 0 {
			return true
		}
	}
	return false
}
