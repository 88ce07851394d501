package sam

// The Sam model (segment_anything/modeling/sam.py): the three modules and
// the mask post-processing.

import (
	"fmt"
	"strings"

	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

// Model is a loaded SAM: image encoder, prompt encoder and mask decoder,
// with the configuration they were built for. Use a Predictor to segment
// an image interactively. A Model is safe for concurrent use: each module
// serialises its runs.
type Model struct {
	Config
	Encoder *ImageEncoder
	Prompt  *PromptEncoder
	Decoder *MaskDecoder
}

// newModel fetches every parameter of Sam from p; cfg must be valid.
func newModel(p *nn.Params, cfg Config) *Model {
	return &Model{
		Config:  cfg,
		Encoder: newImageEncoder(p.Sub("image_encoder"), cfg),
		Prompt:  newPromptEncoder(p.Sub("prompt_encoder"), cfg),
		Decoder: newMaskDecoder(p.Sub("mask_decoder"), cfg),
	}
}

// New builds the model from a SAM state dict (keys image_encoder.*,
// prompt_encoder.*, mask_decoder.*) for cfg. Every tensor is shape-checked,
// and a tensor the model does not use is an error too (a checkpoint of
// another variant or model).
func New(store *weights.Store, cfg Config) (*Model, error) {
	m, err := build(store, cfg, cfg.Name, true, newModel)
	if err != nil {
		return nil, err
	}
	if err := m.Encoder.compile(); err != nil {
		return nil, fmt.Errorf("sam: %s: %w", cfg.Name, err)
	}
	return m, nil
}

// build checks cfg and runs a module's constructor over the parameters of
// s (nn.Build), naming the module what in errors.
func build[T any](s *weights.Store, cfg Config, what string, strict bool, newModule func(*nn.Params, Config) T) (T, error) {
	var zero T
	if s == nil {
		return zero, fmt.Errorf("sam: %s: nil weights store", what)
	}
	if err := cfg.Validate(); err != nil {
		return zero, err
	}
	m, err := nn.Build(s, strict, func(p *nn.Params) T { return newModule(p, cfg) })
	if err != nil {
		return zero, fmt.Errorf("sam: %s: %w", what, err)
	}
	return m, nil
}

// RandomWeights makes a SAM state dict with every name and shape that cfg
// needs, filled with seeded random values (nn.DefaultInit, the prompt
// embeddings and token tables +-0.5, the Gaussian frequency matrix +-1),
// for benchmarks and tests at full size without a checkpoint. It is drawn
// by the model's own constructors, so its schema is New's. An invalid cfg
// gives an empty store (New reports why).
func RandomWeights(cfg Config, seed int64) *weights.Store {
	valid := cfg.Validate() == nil
	return nn.RandomStore(seed, randomInit, func(p *nn.Params) {
		if valid {
			newModel(p, cfg)
		}
	})
}

// randomInit is RandomWeights' distribution.
func randomInit(name string, shape []int) (scale, offset float64) {
	switch {
	case strings.HasSuffix(name, "positional_encoding_gaussian_matrix"):
		return 1, 0
	case strings.Contains(name, "prompt_encoder.point_embeddings."), strings.HasSuffix(name, "_embed.weight"),
		strings.HasSuffix(name, "iou_token.weight"), strings.HasSuffix(name, "mask_tokens.weight"):
		return 0.5, 0
	}
	return nn.DefaultInit(name, shape)
}

// PostprocessMasks is Sam.postprocess_masks: low-res mask logits
// (1, K, h', w') are resized bilinearly (align_corners=False) to the
// padded input size S x S, cropped to the resized image (newh, neww) and
// resized bilinearly to the original size (h, w). It returns logits
// (1, K, h, w); a mask is logits > 0.
func (c Config) PostprocessMasks(lowRes *nn.Tensor, newh, neww, h, w int) (*nn.Tensor, error) {
	s := c.ImageSize
	if lowRes == nil {
		return nil, fmt.Errorf("sam: postprocess masks: nil masks: %w", ErrInput)
	}
	ls := lowRes.Shape
	if len(ls) != 4 || ls[0] != 1 || ls[1] <= 0 || ls[2] <= 0 || ls[3] <= 0 || len(lowRes.Data) != ls[1]*ls[2]*ls[3] {
		return nil, fmt.Errorf("sam: postprocess masks: masks have shape %v, want (1, K, H, W): %w", ls, ErrInput)
	}
	if newh <= 0 || neww <= 0 || newh > s || neww > s {
		return nil, fmt.Errorf("sam: postprocess masks: input size %dx%d outside the %dx%d input", neww, newh, s, s)
	}
	if h <= 0 || w <= 0 {
		return nil, fmt.Errorf("sam: postprocess masks: original size %dx%d is empty", w, h)
	}
	k, n := ls[1], ls[2]*ls[3]
	out := make([]float32, k*h*w)
	for i := 0; i < k; i++ {
		c.postprocessMask(out[i*h*w:(i+1)*h*w], lowRes.Data[i*n:(i+1)*n], ls[2], ls[3], newh, neww, h, w)
	}
	return nn.NewTensor(out, 1, k, h, w), nil
}

// postprocessMask is PostprocessMasks on one low-res mask (lh x lw) into
// dst (h x w); the sizes are checked by the caller.
func (c Config) postprocessMask(dst, low []float32, lh, lw, newh, neww, h, w int) {
	s := c.ImageSize
	if newh == h && neww == w {
		// F.interpolate(masks, (S, S), bilinear)[..., :newh, :neww]: only
		// the kept corner is computed; resizing it to the same size is the
		// identity (weights 1 and 0).
		nn.ResizeBilinearCropInto(dst, low, 1, lh, lw, s, s, newh, neww)
		return
	}
	crop := make([]float32, newh*neww)
	nn.ResizeBilinearCropInto(crop, low, 1, lh, lw, s, s, newh, neww)
	// F.interpolate(masks, (h, w), bilinear)
	nn.ResizeBilinearInto(dst, crop, 1, newh, neww, h, w)
}
