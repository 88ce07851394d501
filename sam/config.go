package sam

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/mam-go/mam-go/weights"
)

// Config holds every hyper-parameter of a SAM model, as build_sam.py does.
type Config struct {
	Name string `json:"name"`

	ImageSize    int     `json:"img_size"`    // S: input side (1024)
	PatchSize    int     `json:"patch_size"`  // 16
	EncoderDim   int     `json:"embed_dim"`   // C: encoder width (768 for ViT-B)
	EncoderDepth int     `json:"depth"`       // transformer blocks
	EncoderHeads int     `json:"heads"`       // attention heads
	GlobalAttn   []int   `json:"global_attn"` // blocks with global attention
	WindowSize   int     `json:"window"`      // windowed-attention side (14)
	MLPRatio     float64 `json:"mlp_ratio"`   // 4
	LayerNormEps float64 `json:"ln_eps"`      // encoder LayerNorm eps (1e-6)

	PromptDim    int `json:"prompt_dim"`    // out_chans / transformer_dim (256)
	MaskInChans  int `json:"mask_in_chans"` // mask-prompt downscaling width (16)
	DecoderDepth int `json:"dec_depth"`     // TwoWayTransformer blocks (2)
	DecoderMLP   int `json:"dec_mlp"`       // TwoWayTransformer MLP width (2048)
	DecoderHeads int `json:"dec_heads"`     // 8
	IoUHidden    int `json:"iou_hidden"`    // IoU head width (256)
	IoUDepth     int `json:"iou_depth"`     // IoU head layers (3)
	NumMultimask int `json:"num_multimask"` // multimask outputs (3)

	PixelMean [3]float32 `json:"-"`
	PixelStd  [3]float32 `json:"-"`
}

// EmbedSize is E = S / patch, the side of the image embedding grid.
func (c Config) EmbedSize() int { return c.ImageSize / c.PatchSize }

// IsGlobal reports whether encoder block i uses global attention.
func (c Config) IsGlobal(i int) bool {
	for _, g := range c.GlobalAttn {
		if g == i {
			return true
		}
	}
	return false
}

// Validate checks that the configuration describes a model the package
// can build: positive sizes, widths that split into their heads, a window
// for every windowed block.
func (c Config) Validate() error {
	err := func(format string, args ...any) error {
		return fmt.Errorf("sam: config %s: "+format, append([]any{c.Name}, args...)...)
	}
	switch {
	case c.PatchSize <= 0 || c.ImageSize <= 0 || c.ImageSize%c.PatchSize != 0:
		return err("image size %d is not a positive multiple of patch size %d", c.ImageSize, c.PatchSize)
	case c.EncoderDim <= 0 || c.EncoderHeads <= 0 || c.EncoderDim%c.EncoderHeads != 0:
		return err("encoder width %d is not a positive multiple of %d heads", c.EncoderDim, c.EncoderHeads)
	case c.EncoderDepth <= 0:
		return err("encoder depth %d", c.EncoderDepth)
	case c.MLPRatio <= 0 || int(float64(c.EncoderDim)*c.MLPRatio) <= 0:
		return err("mlp ratio %g", c.MLPRatio)
	case c.PromptDim <= 0 || c.PromptDim%8 != 0 || c.DecoderHeads <= 0 || (c.PromptDim/2)%c.DecoderHeads != 0:
		return err("prompt width %d (a multiple of 8) with %d decoder heads is not supported", c.PromptDim, c.DecoderHeads)
	case c.MaskInChans < 4 || c.MaskInChans%4 != 0:
		return err("mask channels %d, want a positive multiple of 4", c.MaskInChans)
	case c.NumMultimask <= 0 || c.IoUDepth <= 0 || c.IoUHidden <= 0 || c.DecoderDepth <= 0 || c.DecoderMLP <= 0:
		return err("decoder (multimask %d, iou depth %d, iou width %d, depth %d, mlp %d)", c.NumMultimask, c.IoUDepth, c.IoUHidden, c.DecoderDepth, c.DecoderMLP)
	}
	for i := 0; i < c.EncoderDepth; i++ {
		if !c.IsGlobal(i) && c.WindowSize <= 0 {
			return err("block %d is windowed with window size %d", i, c.WindowSize)
		}
	}
	return nil
}

func base() Config {
	return Config{
		ImageSize: 1024, PatchSize: 16, WindowSize: 14, MLPRatio: 4, LayerNormEps: 1e-6,
		PromptDim: 256, MaskInChans: 16, DecoderDepth: 2, DecoderMLP: 2048, DecoderHeads: 8,
		IoUHidden: 256, IoUDepth: 3, NumMultimask: 3,
		PixelMean: [3]float32{123.675, 116.28, 103.53},
		PixelStd:  [3]float32{58.395, 57.12, 57.375},
	}
}

// vit is base with the image encoder of a released ViT variant.
func vit(name string, dim, depth, heads int, global ...int) Config {
	c := base()
	c.Name, c.EncoderDim, c.EncoderDepth, c.EncoderHeads, c.GlobalAttn = name, dim, depth, heads, global
	return c
}

// ViTB is the configuration of sam_vit_b_01ec64.pth.
func ViTB() Config { return vit("vit_b", 768, 12, 12, 2, 5, 8, 11) }

// ViTL is the configuration of sam_vit_l_0b3195.pth.
func ViTL() Config { return vit("vit_l", 1024, 24, 16, 5, 11, 17, 23) }

// ViTH is the configuration of sam_vit_h_4b8939.pth.
func ViTH() Config { return vit("vit_h", 1280, 32, 16, 7, 15, 23, 31) }

// Tiny is the small test configuration of the golden data
// (testdata/golden/tiny/weights/config.json).
func Tiny() Config {
	c := base()
	c.Name, c.ImageSize, c.EncoderDim, c.EncoderDepth, c.EncoderHeads = "tiny", 256, 32, 2, 2
	c.GlobalAttn, c.WindowSize = []int{1}, 6
	c.PromptDim, c.DecoderMLP, c.DecoderHeads, c.IoUHidden, c.MaskInChans = 32, 64, 2, 32, 8
	return c
}

// Preset returns a named configuration: vit_b, vit_l, vit_h or tiny.
func Preset(name string) (Config, error) {
	switch name {
	case "vit_b", "vitb", "b":
		return ViTB(), nil
	case "vit_l", "vitl", "l":
		return ViTL(), nil
	case "vit_h", "vith", "h":
		return ViTH(), nil
	case "tiny":
		return Tiny(), nil
	}
	return Config{}, fmt.Errorf("sam: unknown preset %q (want vit_b, vit_l, vit_h or tiny)", name)
}

// LoadConfigJSON reads a config.json as written for the golden data; keys it
// leaves out keep the ViT-B defaults.
func LoadConfigJSON(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("sam: config: %w", err)
	}
	c := base()
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("sam: config %s: %w", path, err)
	}
	return c, nil
}

// DetectConfig recognises the preset from a SAM checkpoint's shapes (the
// encoder width 768/1024/1280, or the tiny test model) and checks that the
// depth matches.
func DetectConfig(s *weights.Store) (Config, error) {
	sh, ok := s.Shape("image_encoder.patch_embed.proj.weight")
	if !ok || len(sh) != 4 {
		return Config{}, fmt.Errorf("sam: %s: no image_encoder.patch_embed.proj.weight: not a SAM checkpoint", s.Source())
	}
	var c Config
	switch sh[0] {
	case 768:
		c = ViTB()
	case 1024:
		c = ViTL()
	case 1280:
		c = ViTH()
	case 32:
		c = Tiny()
	default:
		return Config{}, fmt.Errorf("sam: %s: encoder width %d matches no preset (768, 1024, 1280)", s.Source(), sh[0])
	}
	depth := 0
	for s.Has(fmt.Sprintf("image_encoder.blocks.%d.norm1.weight", depth)) {
		depth++
	}
	if depth != c.EncoderDepth {
		return Config{}, fmt.Errorf("sam: %s: width %d suggests %s with %d blocks, checkpoint has %d", s.Source(), sh[0], c.Name, c.EncoderDepth, depth)
	}
	return c, nil
}
