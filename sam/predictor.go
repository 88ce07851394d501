package sam

// The interactive predictor (segment_anything/predictor.py, SamPredictor).

import (
	"context"
	"errors"
	"fmt"
	"image"
	"sync"

	"gorgonia.org/tensor"

	"github.com/mam-go/mam-go/nn"
)

// Errors wrapped by Predictor methods, for errors.Is.
var (
	// ErrNoImage: Predict or an embedding getter was called before SetImage.
	ErrNoImage = errors.New("no image set: call SetImage first")
	// ErrNoPrompt: Predict was given no point, no box and no mask.
	ErrNoPrompt = errors.New("no prompt: give points, a box or a mask")
	// ErrBadPrompt: a point, box or mask prompt that cannot be used.
	ErrBadPrompt = errors.New("bad prompt")
)

// Predictor computes an image's embeddings once and then predicts masks for
// any number of prompts, as SamPredictor does. It is not safe for
// concurrent use; make one per goroutine (they can share a Model).
type Predictor struct {
	model *Model

	emb        *tensor.Dense // image embeddings (1, D, E, E)
	input      *tensor.Dense // normalised padded input (1, 3, S, S), or nil
	h, w       int           // original size
	newh, neww int           // resized size inside the input
}

// PromptInput is one prompt for Predict, in original image pixels.
type PromptInput struct {
	// Points are clicks; Label 1 marks foreground, 0 background.
	Points []Point
	// Box is an optional box prompt. Boxes partly outside the image are
	// allowed; a box with no area inside the image is an error.
	Box *Box
	// Mask is an optional low-res mask prompt, logits (1, 1, 4E, 4E)
	// ((1, 4E, 4E) and (4E, 4E) are accepted too), typically a previous
	// Prediction's LowResMask(Best()).
	Mask *tensor.Dense
	// Multimask asks for the 3 disambiguating masks instead of 1 (the
	// reference's multimask_output, True by default there; the matting
	// pipeline uses it).
	Multimask bool
}

// Prediction is the result of Predict, K = 3 masks with Multimask, else 1.
// The masks at the original size are computed when first asked for (Mask,
// Binary, Masks), each on its own: the matting pipeline needs only the
// best one. A Prediction is safe for concurrent use.
type Prediction struct {
	// IoU holds the predicted quality of each mask (K values).
	IoU []float32
	// LowRes holds the decoder's low-res logits (1, K, 4E, 4E).
	LowRes *tensor.Dense

	cfg                Config
	newh, neww, oh, ow int // resized and original image sizes
	mu                 sync.Mutex
	masks              [][]float32 // full-size logits by mask, nil until asked for
}

// NewPredictor returns a predictor for m with no image set.
func NewPredictor(m *Model) *Predictor { return &Predictor{model: m} }

// Model returns the predictor's model.
func (p *Predictor) Model() *Model { return p.model }

// SetImage preprocesses img (resize of the long side to S, normalisation,
// padding) and runs the image encoder once; later Predict calls reuse the
// embeddings. On error the previous image is forgotten.
func (p *Predictor) SetImage(ctx context.Context, img image.Image) error {
	p.Reset()
	if img == nil {
		return fmt.Errorf("sam: set image: nil image")
	}
	if b := img.Bounds(); b.Dx() <= 0 || b.Dy() <= 0 {
		return fmt.Errorf("sam: set image: image is %dx%d: %w", b.Dx(), b.Dy(), ErrImageSize)
	}
	rgb, err := ToRGB(img)
	if err != nil {
		return fmt.Errorf("sam: set image: %w", err)
	}
	return p.SetRGB(ctx, rgb)
}

// SetRGB is SetImage for an image already in RGB form.
func (p *Predictor) SetRGB(ctx context.Context, img *RGB) error {
	p.Reset()
	if p.model == nil || p.model.Encoder == nil {
		return fmt.Errorf("sam: set image: predictor has no model")
	}
	if img == nil || img.W <= 0 || img.H <= 0 {
		w, h := 0, 0
		if img != nil {
			w, h = img.W, img.H
		}
		return fmt.Errorf("sam: set image: image is %dx%d: %w", w, h, ErrImageSize)
	}
	input, newh, neww := p.model.Preprocess(img)
	if input == nil {
		return fmt.Errorf("sam: set image: cannot preprocess a %dx%d image with %d bytes: %w", img.W, img.H, len(img.Pix), ErrImageSize)
	}
	emb, err := p.model.Encoder.Forward(ctx, input)
	if err != nil {
		return fmt.Errorf("sam: set image: %w", err)
	}
	p.emb, p.input = emb, input
	p.h, p.w, p.newh, p.neww = img.H, img.W, newh, neww
	return nil
}

// SetEmbedding sets precomputed image embeddings (1, D, E, E) of an h x w
// image, with the normalised input (1, 3, S, S) they came from (input may
// be nil when the caller does not need Input). It skips the encoder.
func (p *Predictor) SetEmbedding(emb, input *tensor.Dense, h, w int) error {
	p.Reset()
	if p.model == nil {
		return fmt.Errorf("sam: set embedding: predictor has no model")
	}
	cfg := p.model.Config
	e, s := cfg.EmbedSize(), cfg.ImageSize
	if emb == nil || !emb.Shape().Eq(tensor.Shape{1, cfg.PromptDim, e, e}) || emb.Dtype() != tensor.Float32 {
		var sh tensor.Shape
		if emb != nil {
			sh = emb.Shape()
		}
		return fmt.Errorf("sam: set embedding: embeddings have shape %v, want (1, %d, %d, %d) float32", sh, cfg.PromptDim, e, e)
	}
	if input != nil && (!input.Shape().Eq(tensor.Shape{1, 3, s, s}) || input.Dtype() != tensor.Float32) {
		return fmt.Errorf("sam: set embedding: input has shape %v, want (1, 3, %d, %d) float32", input.Shape(), s, s)
	}
	if h <= 0 || w <= 0 {
		return fmt.Errorf("sam: set embedding: image is %dx%d: %w", w, h, ErrImageSize)
	}
	p.emb, p.input = emb, input
	p.h, p.w = h, w
	p.newh, p.neww = PreprocessShape(h, w, s)
	return nil
}

// Reset forgets the current image.
func (p *Predictor) Reset() {
	p.emb, p.input = nil, nil
	p.h, p.w, p.newh, p.neww = 0, 0, 0, 0
}

// IsImageSet reports whether an image (or embedding) is set.
func (p *Predictor) IsImageSet() bool { return p.emb != nil }

// Embeddings returns the image embeddings (1, D, E, E) of the current
// image, or nil before SetImage. They are shared: do not modify them.
func (p *Predictor) Embeddings() *tensor.Dense { return p.emb }

// Input returns the normalised, padded input (1, 3, S, S) of the current
// image, or nil. It is shared: do not modify it.
func (p *Predictor) Input() *tensor.Dense { return p.input }

// OriginalSize is the current image's size (h, w).
func (p *Predictor) OriginalSize() (h, w int) { return p.h, p.w }

// InputSize is the current image's resized size (newh, neww), its region
// in the top-left corner of the S x S input.
func (p *Predictor) InputSize() (newh, neww int) { return p.newh, p.neww }

// Predict predicts masks for one prompt on the current image.
func (p *Predictor) Predict(ctx context.Context, in PromptInput) (*Prediction, error) {
	if p.emb == nil || p.model == nil {
		return nil, fmt.Errorf("sam: predict: %w", ErrNoImage)
	}
	m := p.model
	if len(in.Points) == 0 && in.Box == nil && in.Mask == nil {
		return nil, fmt.Errorf("sam: predict: %w", ErrNoPrompt)
	}

	// Points: original pixels -> input frame (ResizeLongestSide.apply_coords).
	pts := make([]Point, len(in.Points))
	for i, pt := range in.Points {
		if !finite(pt.X) || !finite(pt.Y) {
			return nil, fmt.Errorf("sam: predict: point %d (%g, %g) is not finite: %w", i, pt.X, pt.Y, ErrBadPrompt)
		}
		if pt.Label != 0 && pt.Label != 1 {
			return nil, fmt.Errorf("sam: predict: point %d has label %d, want 1 (foreground) or 0 (background): %w", i, pt.Label, ErrBadPrompt)
		}
		x, y := ApplyCoords(pt.X, pt.Y, p.h, p.w, p.newh, p.neww)
		pts[i] = Point{X: x, Y: y, Label: pt.Label}
	}

	var box *Box
	if b := in.Box; b != nil {
		if !finite(b.X0) || !finite(b.Y0) || !finite(b.X1) || !finite(b.Y1) {
			return nil, fmt.Errorf("sam: predict: box %v is not finite: %w", *b, ErrBadPrompt)
		}
		// The reference does not clip boxes: we clip a copy to the image
		// only to reject a box that covers no pixel of it, and feed the
		// unclipped corners to the model so valid boxes keep the
		// reference's numerics.
		x0, y0 := max(b.X0, 0), max(b.Y0, 0)
		x1, y1 := min(b.X1, float64(p.w)), min(b.Y1, float64(p.h))
		if x1 <= x0 || y1 <= y0 {
			return nil, fmt.Errorf("sam: predict: box (%g, %g)-(%g, %g) has no area inside the %dx%d image: %w", b.X0, b.Y0, b.X1, b.Y1, p.w, p.h, ErrBadPrompt)
		}
		bx0, by0 := ApplyCoords(b.X0, b.Y0, p.h, p.w, p.newh, p.neww)
		bx1, by1 := ApplyCoords(b.X1, b.Y1, p.h, p.w, p.newh, p.neww)
		box = &Box{bx0, by0, bx1, by1}
	}

	var mask *tensor.Dense
	if in.Mask != nil {
		var err error
		if mask, err = p.maskPrompt(in.Mask); err != nil {
			return nil, err
		}
	}

	sparse, dense, err := m.Prompt.Forward(ctx, pts, box, mask)
	if err != nil {
		return nil, fmt.Errorf("sam: predict: %w", err)
	}
	lowRes, iou, err := m.Decoder.Forward(ctx, p.emb, m.Prompt.DensePE(), sparse, dense, in.Multimask)
	if err != nil {
		return nil, fmt.Errorf("sam: predict: %w", err)
	}
	ious := nn.F32(iou)
	if ls := lowRes.Shape(); len(ls) != 4 || ls[0] != 1 || ls[1] != len(ious) {
		return nil, fmt.Errorf("sam: predict: decoder gave masks %v for %d scores", ls, len(ious))
	}
	return &Prediction{IoU: ious, LowRes: lowRes, cfg: m.Config,
		newh: p.newh, neww: p.neww, oh: p.h, ow: p.w, masks: make([][]float32, len(ious))}, nil
}

// maskPrompt checks a mask prompt and returns it as (1, 1, 4E, 4E).
func (p *Predictor) maskPrompt(mask *tensor.Dense) (*tensor.Dense, error) {
	side := 4 * p.model.EmbedSize()
	sh := mask.Shape()
	ok := mask.Dtype() == tensor.Float32 && len(sh) >= 2 && len(sh) <= 4 && sh[len(sh)-1] == side && sh[len(sh)-2] == side
	for _, d := range sh[:max(len(sh)-2, 0)] {
		ok = ok && d == 1
	}
	if !ok {
		return nil, fmt.Errorf("sam: predict: mask prompt has shape %v (%v), want (1, 1, %d, %d) float32 logits: %w", sh, mask.Dtype(), side, side, ErrBadPrompt)
	}
	data := nn.F32(mask)
	if len(data) != side*side {
		return nil, fmt.Errorf("sam: predict: mask prompt has %d values, want %d: %w", len(data), side*side, ErrBadPrompt)
	}
	for i, v := range data {
		if !finite(float64(v)) {
			return nil, fmt.Errorf("sam: predict: mask prompt value %d is %g: %w", i, v, ErrBadPrompt)
		}
	}
	return nn.NewDense(data, 1, 1, side, side), nil
}

// K is the number of masks predicted.
func (r *Prediction) K() int { return len(r.IoU) }

// Best is the index of the mask with the highest predicted IoU (the first
// one on ties, as argmax).
func (r *Prediction) Best() int {
	best := 0
	for i, v := range r.IoU {
		if v > r.IoU[best] {
			best = i
		}
	}
	return best
}

// Mask returns mask k's logits at the original size (H*W values,
// row-major; a pixel is in the mask when its logit is > 0), computing them
// on the first call (Sam.postprocess_masks). It returns nil for k out of
// range. The slice is shared by later calls: do not modify it.
func (r *Prediction) Mask(k int) []float32 {
	if k < 0 || k >= r.K() || k >= len(r.masks) {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.masks[k] == nil {
		r.masks[k] = make([]float32, r.oh*r.ow)
		r.postprocess(r.masks[k], k)
	}
	return r.masks[k]
}

// postprocess writes mask k's logits at the original size to dst.
func (r *Prediction) postprocess(dst []float32, k int) {
	ls := r.LowRes.Shape()
	n := ls[2] * ls[3]
	r.cfg.postprocessMask(dst, nn.F32(r.LowRes)[k*n:(k+1)*n], ls[2], ls[3], r.newh, r.neww, r.oh, r.ow)
}

// Masks returns every mask's logits at the original size, (1, K, H, W),
// in a new tensor.
func (r *Prediction) Masks() *tensor.Dense {
	out := make([]float32, 0, r.K()*r.oh*r.ow)
	for k := 0; k < r.K(); k++ {
		out = append(out, r.Mask(k)...)
	}
	return nn.NewDense(out, 1, r.K(), r.oh, r.ow)
}

// Binary returns mask k thresholded at logit 0 (H*W values, true inside),
// or nil for k out of range. Unless Mask(k) was called, the logits are
// computed into scratch memory and not kept.
func (r *Prediction) Binary(k int) []bool {
	if k < 0 || k >= r.K() || k >= len(r.masks) {
		return nil
	}
	r.mu.Lock()
	m := r.masks[k]
	r.mu.Unlock()
	if m == nil {
		m = nn.Buffer(r.oh * r.ow)
		defer nn.Recycle(m)
		r.postprocess(m, k)
	}
	out := make([]bool, len(m))
	for i, v := range m {
		out[i] = v > 0
	}
	return out
}

// LowResMask returns a copy of low-res mask k (1, 1, 4E, 4E), ready to be
// a mask prompt of the next Predict, or nil for k out of range.
func (r *Prediction) LowResMask(k int) *tensor.Dense {
	if k < 0 || k >= r.K() {
		return nil
	}
	s := r.LowRes.Shape()
	n := s[2] * s[3]
	return nn.NewDense(append([]float32(nil), nn.F32(r.LowRes)[k*n:(k+1)*n]...), 1, 1, s[2], s[3])
}
