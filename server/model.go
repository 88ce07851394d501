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

	"github.com/mam-go/mam-go/gdino"
	"github.com/mam-go/mam-go/mam"
	"github.com/mam-go/mam-go/nn"
)

// Model is the matting model the server runs: a loaded *mam.Model (see
// LoadModel, mam.Load and mam.New). Loaded with a text detector
// (mam.WithDetector), the server also takes text prompts.
type Model = mam.Model

// LoadModel loads a SAM checkpoint and a MAM checkpoint (.pth, .npz or a
// directory of .npy), as mam.Load does; opts may add a text detector
// (mam.WithDetector).
func LoadModel(samPath, mamPath string, opts ...mam.Option) (*Model, error) {
	m, err := mam.Load(context.Background(), samPath, mamPath, opts...)
	if err != nil {
		return nil, fmt.Errorf("server: loading the model: %w", err)
	}
	return m, nil
}

// DefaultCheckpoints are the paths of the released SAM ViT-B and MAM
// ViT-B checkpoints in the download cache (mam.CacheDir), where the matte
// command puts them.
func DefaultCheckpoints() (samPath, mamPath string, err error) {
	dir, err := mam.CacheDir()
	if err != nil {
		return "", "", fmt.Errorf("server: %w", err)
	}
	return filepath.Join(dir, mam.SAMViTB.Name), filepath.Join(dir, mam.MAMViTB.Name), nil
}

// modes lists the refinement modes, the default first.
var modes = []string{string(mam.PostProcess), string(mam.MaskGuide), string(mam.Plain)}

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

// textPrompts says whether the model takes text prompts (it has a
// GroundingDINO detector).
func (e *engine) textPrompts() bool { return e.m.Detector != nil }

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
	// Text is a caption: the detector's best box becomes the box prompt.
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
		n += int64(len(emb.Data)) * 4
	}
	if in := p.Input(); in != nil {
		n += int64(len(in.Data)) * 4
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

// mam is the prompt as the library takes it.
func (e *engine) mam(p prompt) mam.Prompt {
	mp := mam.Prompt{Text: p.Text}
	for _, pt := range p.Points {
		mp.Points = append(mp.Points, mam.Point{X: pt.X, Y: pt.Y, Label: pt.Label})
	}
	if p.Box != nil {
		mp.Box = &mam.Box{X0: p.Box.X0, Y0: p.Box.Y0, X1: p.Box.X1, Y1: p.Box.Y1}
	}
	if p.Mask != nil {
		side := e.logitsSide()
		mp.Mask = nn.NewTensor(append([]float32(nil), p.Mask...), 1, 1, side, side)
	}
	return mp
}

// isPromptError says whether err comes from a prompt the model cannot use
// (a box with no area inside the image, a text that matches nothing, ...),
// a client error.
func isPromptError(err error) bool {
	return errors.Is(err, mam.ErrBadPrompt) || errors.Is(err, mam.ErrNoPrompt) ||
		errors.Is(err, mam.ErrNoDetector) || errors.Is(err, mam.ErrNoDetection) || errors.Is(err, gdino.ErrEmptyCaption)
}

// isImageError says whether err comes from an image the model cannot take.
func isImageError(err error) bool { return errors.Is(err, mam.ErrBadImage) }

// matte mattes p on x (mam.Session.Matte: SAM's best mask of three, M2M,
// refinement; a text prompt's best box as the box prompt).
func (e *engine) matte(ctx context.Context, x *encoded, p prompt) (*result, error) {
	mode, err := mam.ParseMode(p.Mode)
	if err != nil {
		return nil, err
	}
	r, err := x.sess.Matte(ctx, e.mam(p), mam.WithMode(mode))
	if err != nil {
		return nil, err
	}
	return &result{res: r}, nil
}

// logits returns the low-res mask logits (logitsSide^2 values) of the mask
// p's matte is made from: the mask prompt that refines it further. Only
// SAM runs, except for a text prompt (whose box needs the detector).
func (e *engine) logits(ctx context.Context, x *encoded, p prompt) ([]float32, error) {
	if p.Text != "" {
		r, err := e.matte(ctx, x, p)
		if err != nil {
			return nil, err
		}
		return r.logits(), nil
	}
	pr, err := x.sess.Predictor().Predict(ctx, e.mam(p).SAM())
	if err != nil {
		return nil, err
	}
	return pr.LowResMask(pr.Best()).Data, nil
}

// logits are the low-res logits of the mask a result was made from.
func (r *result) logits() []float32 {
	if m := r.res.MaskPrompt(); m != nil {
		return m.Data
	}
	return nil
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
