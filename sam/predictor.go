package sam

// The interactive predictor (segment_anything/predictor.py, SamPredictor).

import (
	"context"
	"fmt"
	"image"
	"slices"
	"sync"

	"github.com/mam-go/mam-go/nn"
)

// Predictor computes an image's embeddings once and then predicts masks for
// any number of prompts, as SamPredictor does. It is not safe for
// concurrent use; make one per goroutine (they can share a Model).
type Predictor struct {
	model *Model

	emb        *nn.Tensor // image embeddings (1, D, E, E)
	input      *nn.Tensor // normalised padded input (1, 3, S, S), or nil
	h, w       int        // original size
	newh, neww int        // resized size inside the input
}

// Prediction is the result of Predict, K = 3 masks with Multimask, else 1.
// The masks at the original size are computed when first asked for (Mask,
// Binary, Masks), each on its own: the matting pipeline needs only the
// best one. A Prediction is safe for concurrent use.
type Prediction struct {
	// IoU holds the predicted quality of each mask (K values).
	IoU []float32
	// LowRes holds the decoder's low-res logits (1, K, 4E, 4E).
	LowRes *nn.Tensor

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
		return fmt.Errorf("sam: set image: nil image: %w", ErrBadImage)
	}
	if b := img.Bounds(); b.Dx() <= 0 || b.Dy() <= 0 {
		return fmt.Errorf("sam: set image: image is %dx%d: %w", b.Dx(), b.Dy(), ErrBadImage)
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
		return fmt.Errorf("sam: set image: image is %dx%d: %w", w, h, ErrBadImage)
	}
	input, newh, neww := p.model.Preprocess(img)
	if input == nil {
		return fmt.Errorf("sam: set image: cannot preprocess a %dx%d image with %d bytes: %w", img.W, img.H, len(img.Pix), ErrBadImage)
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
func (p *Predictor) SetEmbedding(emb, input *nn.Tensor, h, w int) error {
	p.Reset()
	if p.model == nil {
		return fmt.Errorf("sam: set embedding: predictor has no model")
	}
	cfg := p.model.Config
	e, s := cfg.EmbedSize(), cfg.ImageSize
	if !emb.HasShape(1, cfg.PromptDim, e, e) {
		var sh []int
		if emb != nil {
			sh = emb.Shape
		}
		return fmt.Errorf("sam: set embedding: embeddings have shape %v, want (1, %d, %d, %d): %w", sh, cfg.PromptDim, e, e, ErrInput)
	}
	if input != nil && !input.HasShape(1, 3, s, s) {
		return fmt.Errorf("sam: set embedding: input has shape %v, want (1, 3, %d, %d): %w", input.Shape, s, s, ErrInput)
	}
	if h <= 0 || w <= 0 {
		return fmt.Errorf("sam: set embedding: image is %dx%d: %w", w, h, ErrBadImage)
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
func (p *Predictor) Embeddings() *nn.Tensor { return p.emb }

// Input returns the normalised, padded input (1, 3, S, S) of the current
// image, or nil. It is shared: do not modify it.
func (p *Predictor) Input() *nn.Tensor { return p.input }

// OriginalSize is the current image's size (h, w).
func (p *Predictor) OriginalSize() (h, w int) { return p.h, p.w }

// InputSize is the current image's resized size (newh, neww), its region
// in the top-left corner of the S x S input.
func (p *Predictor) InputSize() (newh, neww int) { return p.newh, p.neww }

// Predict predicts masks for one prompt on the current image
// (SamPredictor.predict).
func (p *Predictor) Predict(ctx context.Context, in Prompt) (*Prediction, error) {
	if p.emb == nil || p.model == nil {
		return nil, fmt.Errorf("sam: predict: %w", ErrNoImage)
	}
	if err := in.ValidateFor(p.w, p.h); err != nil {
		return nil, err
	}
	m := p.model

	// Points: original pixels -> input frame (ResizeLongestSide.apply_coords).
	pts := make([]Point, len(in.Points))
	for i, pt := range in.Points {
		x, y := ApplyCoords(pt.X, pt.Y, p.h, p.w, p.newh, p.neww)
		pts[i] = Point{X: x, Y: y, Label: pt.Label}
	}

	var box *Box
	if b := in.Box; b != nil {
		// Unclipped, as the reference feeds it.
		bx0, by0 := ApplyCoords(b.X0, b.Y0, p.h, p.w, p.newh, p.neww)
		bx1, by1 := ApplyCoords(b.X1, b.Y1, p.h, p.w, p.newh, p.neww)
		box = &Box{bx0, by0, bx1, by1}
	}

	var mask *nn.Tensor
	if in.Mask != nil {
		side := 4 * m.EmbedSize()
		if n, _ := maskSide(in.Mask); n != side {
			return nil, fmt.Errorf("sam: predict: mask prompt has shape %v, want (1, 1, %d, %d) logits: %w", in.Mask.Shape, side, side, ErrBadPrompt)
		}
		mask = nn.NewTensor(in.Mask.Data, 1, 1, side, side)
	}

	sparse, dense, err := m.Prompt.Forward(ctx, pts, box, mask)
	if err != nil {
		return nil, fmt.Errorf("sam: predict: %w", err)
	}
	lowRes, iou, err := m.Decoder.Forward(ctx, p.emb, m.Prompt.DensePE(), sparse, dense, !in.SingleMask)
	if err != nil {
		return nil, fmt.Errorf("sam: predict: %w", err)
	}
	return &Prediction{IoU: iou.Data, LowRes: lowRes, cfg: m.Config,
		newh: p.newh, neww: p.neww, oh: p.h, ow: p.w, masks: make([][]float32, len(iou.Data))}, nil
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
	ls := r.LowRes.Shape
	n := ls[2] * ls[3]
	r.cfg.postprocessMask(dst, r.LowRes.Data[k*n:(k+1)*n], ls[2], ls[3], r.newh, r.neww, r.oh, r.ow)
}

// Masks returns every mask's logits at the original size, (1, K, H, W),
// in a new tensor.
func (r *Prediction) Masks() *nn.Tensor {
	out := make([]float32, 0, r.K()*r.oh*r.ow)
	for k := 0; k < r.K(); k++ {
		out = append(out, r.Mask(k)...)
	}
	return nn.NewTensor(out, 1, r.K(), r.oh, r.ow)
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
func (r *Prediction) LowResMask(k int) *nn.Tensor {
	if k < 0 || k >= r.K() {
		return nil
	}
	s := r.LowRes.Shape
	n := s[2] * s[3]
	return nn.NewTensor(slices.Clone(r.LowRes.Data[k*n:(k+1)*n]), 1, 1, s[2], s[3])
}
