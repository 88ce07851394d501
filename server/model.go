package server

// This file is the only one in the package that uses the mam API (and the
// sam types it exposes). The rest of the server talks to the model through
// engine, encoded, prompt and the render helpers below, so a change of the
// mam API is adapted here.

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"path/filepath"

	"github.com/mam-go/mam-go/mam"
	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/sam"
)

// Model is the matting model the server runs: a loaded *mam.Model (see
// LoadModel, mam.Load and mam.New).
type Model = mam.Model

// LoadModel loads a SAM checkpoint and a MAM checkpoint (.pth, .npz or a
// directory of .npy), as mam.Load does.
func LoadModel(samPath, mamPath string) (*Model, error) {
	m, err := mam.Load(samPath, mamPath)
	if err != nil {
		return nil, fmt.Errorf("server: loading the model: %w", err)
	}
	return m, nil
}

// DefaultCheckpoints are the paths of the released SAM ViT-B and MAM
// ViT-B checkpoints in the download cache (mam.CacheDir), where
// `go run ./examples/matte -download` puts them.
func DefaultCheckpoints() (samPath, mamPath string, err error) {
	dir, err := mam.CacheDir()
	if err != nil {
		return "", "", fmt.Errorf("server: %w", err)
	}
	return filepath.Join(dir, mam.SAMViTB.Name), filepath.Join(dir, mam.MAMViTB.Name), nil
}

// modes lists the refinement modes, the default first.
var modes = []string{string(mam.PostProcess), string(mam.MaskGuide), string(mam.Plain)}

// errTextUnsupported: a text prompt was given, and the model has no text
// prompts yet.
var errTextUnsupported = errors.New("text prompts are not supported by this model")

// engine runs the model for the server.
type engine struct {
	m *mam.Model
}

// newEngine checks the model.
func newEngine(m *mam.Model) (*engine, error) {
	if m == nil || m.SAM == nil || m.M2M == nil {
		return nil, fmt.Errorf("server: %w", ErrNoModel)
	}
	return &engine{m: m}, nil
}

// name is the SAM variant (vit_b, vit_l, vit_h, tiny).
func (e *engine) name() string { return e.m.SAM.Config.Name }

// inputSize is the side of SAM's square input (1024 for the released models).
func (e *engine) inputSize() int { return e.m.SAM.Config.ImageSize }

// logitsSide is the side of the low-res mask logits (4 x the embedding grid).
func (e *engine) logitsSide() int { return 4 * e.m.SAM.Config.EmbedSize() }

// textPrompts says whether the model takes text prompts.
func (e *engine) textPrompts() bool { return false }

// point is one click in image pixels; label 1 foreground, 0 background.
type point struct {
	X, Y  float64
	Label int
}

// box is a box prompt in image pixels.
type box struct{ X0, Y0, X1, Y1 float64 }

// prompt is one matting request to the engine, already validated by the
// server (finite coordinates, labels 0 or 1, a mask of logitsSide^2
// finite values).
type prompt struct {
	Points []point
	Box    *box
	// Mask holds low-res mask logits (logitsSide x logitsSide), typically
	// a previous result's, for iterative refinement; nil for none.
	Mask []float32
	// Text is a text prompt (not supported yet).
	Text string
	Mode string
}

// encoded is one image's SAM embedding and what matting it needs.
type encoded struct {
	sess *mam.Session
}

// encode runs the image encoder on img.
func (e *engine) encode(ctx context.Context, img image.Image) (*encoded, error) {
	s, err := e.m.NewSession(ctx, img)
	if err != nil {
		return nil, err
	}
	return &encoded{sess: s}, nil
}

// bytes is the memory the embedding and the encoder input hold.
func (x *encoded) bytes() int64 {
	p := x.sess.Predictor()
	var n int64
	if emb := p.Embeddings(); emb != nil {
		n += int64(emb.Shape().TotalSize()) * 4
	}
	if in := p.Input(); in != nil {
		n += int64(in.Shape().TotalSize()) * 4
	}
	return n
}

// result is one matte.
type result struct {
	res *mam.Result
}

// width, height, iou and mode describe the matte.
func (r *result) width() int       { return r.res.Width }
func (r *result) height() int      { return r.res.Height }
func (r *result) iou() float32     { return r.res.IoU }
func (r *result) mode() string     { return string(r.res.Mode) }
func (r *result) alpha() []float32 { return r.res.Alpha }

// bytes is the memory the result holds.
func (r *result) bytes() int64 { return int64(len(r.res.Alpha))*4 + int64(len(r.res.Mask)) }

func (p prompt) mam() mam.Prompt {
	var mp mam.Prompt
	for _, pt := range p.Points {
		mp.Points = append(mp.Points, mam.Point{X: pt.X, Y: pt.Y, Label: pt.Label})
	}
	if p.Box != nil {
		mp.Box = &mam.Box{X0: p.Box.X0, Y0: p.Box.Y0, X1: p.Box.X1, Y1: p.Box.Y1}
	}
	return mp
}

func (p prompt) sam(multimask bool) sam.PromptInput {
	in := sam.PromptInput{Multimask: multimask}
	for _, pt := range p.Points {
		in.Points = append(in.Points, sam.Point{X: pt.X, Y: pt.Y, Label: pt.Label})
	}
	if p.Box != nil {
		in.Box = &sam.Box{X0: p.Box.X0, Y0: p.Box.Y0, X1: p.Box.X1, Y1: p.Box.Y1}
	}
	return in
}

// isPromptError says whether err comes from a prompt the model cannot use
// (a box with no area inside the image, ...), a client error.
func isPromptError(err error) bool {
	return errors.Is(err, sam.ErrBadPrompt) || errors.Is(err, sam.ErrNoPrompt) || errors.Is(err, errTextUnsupported)
}

// isImageError says whether err comes from an image the model cannot take.
func isImageError(err error) bool { return errors.Is(err, sam.ErrImageSize) }

// matte mattes p on x. A prompt without a mask runs mam.Session.Matte; one
// with a mask runs the same pipeline with the mask as SAM's mask prompt
// (mam has no mask prompts yet).
func (e *engine) matte(ctx context.Context, x *encoded, p prompt) (*result, error) {
	if p.Text != "" {
		return nil, errTextUnsupported
	}
	mode, err := mam.ParseMode(p.Mode)
	if err != nil {
		return nil, err
	}
	if p.Mask == nil {
		r, err := x.sess.Matte(ctx, p.mam(), mam.WithMode(mode))
		if err != nil {
			return nil, err
		}
		return &result{res: r}, nil
	}
	return e.matteMask(ctx, x, p, mode)
}

// matteMask is mam.Session.Matte with a mask prompt (p.Mask, or none): SAM (multimask, best
// IoU, as MAM decodes), M2M on the binarised best low-res mask, refinement.
func (e *engine) matteMask(ctx context.Context, x *encoded, p prompt, mode mam.Mode) (*result, error) {
	pred := x.sess.Predictor()
	in := p.sam(true)
	if p.Mask != nil {
		side := e.logitsSide()
		in.Mask = nn.NewDense(append([]float32(nil), p.Mask...), 1, 1, side, side)
	}
	pr, err := pred.Predict(ctx, in)
	if err != nil {
		return nil, err
	}
	best := pr.Best()
	guide := pr.LowResMask(best)
	gv := nn.F32(guide)
	for i, v := range gv {
		if v > 0 {
			gv[i] = 1
		} else {
			gv[i] = 0
		}
	}
	h, w := pred.OriginalSize()
	newh, neww := pred.InputSize()
	post := make([]uint8, h*w)
	empty := true
	for i, in := range pr.Binary(best) {
		if in {
			post[i], empty = 1, false
		}
	}
	res := &mam.Result{Width: w, Height: h, Mask: post, IoU: pr.IoU[best], Mode: mode}
	out, err := e.m.M2M.ForwardRegion(ctx, pred.Embeddings(), pred.Input(), guide, newh, neww)
	if err != nil {
		return nil, err
	}
	if empty {
		res.Alpha = make([]float32, h*w)
		return &result{res: res}, nil
	}
	S := e.inputSize()
	os1 := mam.CropResize(nn.F32(out.OS1), S, newh, neww, h, w)
	os4 := mam.CropResize(nn.F32(out.OS4), S, newh, neww, h, w)
	os8 := mam.CropResize(nn.F32(out.OS8), S, newh, neww, h, w)
	if os1 == nil || os4 == nil || os8 == nil {
		return nil, fmt.Errorf("M2M output does not fit the image (%dx%d in %d)", neww, newh, S)
	}
	if res.Alpha, err = mam.Refine(mode, os1, os4, os8, post, h, w); err != nil {
		return nil, err
	}
	return &result{res: res}, nil
}

// logits returns the best low-res mask logits (logitsSide^2 values) SAM
// gives for p on x: the mask prompt that refines p's matte further.
func (e *engine) logits(ctx context.Context, x *encoded, p prompt) ([]float32, error) {
	in := p.sam(true)
	if p.Mask != nil {
		side := e.logitsSide()
		in.Mask = nn.NewDense(append([]float32(nil), p.Mask...), 1, 1, side, side)
	}
	pr, err := x.sess.Predictor().Predict(ctx, in)
	if err != nil {
		return nil, err
	}
	return append([]float32(nil), nn.F32(pr.LowResMask(pr.Best()))...), nil
}

// Rendering: the mam output helpers.

// alphaImage is the matte as 8-bit gray.
func alphaImage(r *result) image.Image { return r.res.Gray() }

// alpha16Image is the matte as 16-bit gray.
func alpha16Image(r *result) image.Image { return r.res.Gray16() }

// maskImage is SAM's mask as black and white.
func maskImage(r *result) image.Image { return r.res.MaskImage() }

// cutoutImage is img with the matte as alpha.
func cutoutImage(r *result, img image.Image) (image.Image, error) { return r.res.Cutout(img) }

// compositeImage is img over an opaque colour.
func compositeImage(r *result, img image.Image, bg color.RGBA) (image.Image, error) {
	return r.res.Composite(img, bg)
}

// parseColor reads a colour name or #rrggbb.
func parseColor(s string) (color.RGBA, error) { return mam.ParseColor(s) }
