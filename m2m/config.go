// Package m2m is the Mask-to-Matte module of Matting Anything: the
// SAM_Decoder_Deep network of networks/m2ms/conv_sam.py, which turns SAM's
// image embeddings, the normalised input image and a binary SAM mask into
// alpha mattes at output strides 1, 4 and 8.
//
// New builds a Decoder from the MAM checkpoint's state dict (DetectConfig
// reads its configuration off the shapes); Forward runs it:
//
//	d, err := m2m.New(store, m2m.Default())
//	out, err := d.Forward(ctx, embeddings, input, guide) // out.OS1, OS4, OS8
//
// conv_sam.go mirrors networks/m2ms/conv_sam.py (SAM_Decoder_Deep,
// BasicBlock) and ops.go networks/ops.py's SpectralNorm: the
// spectral-normalised convolutions are folded into plain weights when the
// model is built, and each eval BatchNorm into the convolution before it,
// so inference runs the reference's eval-mode arithmetic as an nn graph of
// fused convolutions. ForwardRegion computes only the image's region of a
// padded input (region.go says which part of each layer that needs).
//
// A Decoder is safe for concurrent use (runs are serialised).
package m2m

import (
	"fmt"

	"github.com/mam-go/mam-go/weights"
)

// Config holds the hyper-parameters of a SAM_Decoder_Deep.
type Config struct {
	Name string
	// FeatDim is the channel count of the image embeddings fed to layer2
	// (the reference's inplanes: 256, SAM's neck width).
	FeatDim int
	// Layers is the block count of layer1..layer4 ([2, 3, 3, 2]); layer1 is
	// never built by the reference, so Layers[0] is only informative.
	Layers [4]int
	// MidPlanes is layer4's width and conv1's input (32; 64 with the
	// reference's late_downsample).
	MidPlanes int
	// KernelSize is the side of the 3x3 convolutions (5 with large_kernel).
	KernelSize int
}

// Default is the configuration of the released MAM checkpoints
// (mam_vitb/vitl/vith.pth): sam_decoder_deep with layers [2, 3, 3, 2].
func Default() Config {
	return Config{Name: "sam_decoder_deep", FeatDim: 256, Layers: [4]int{2, 3, 3, 2}, MidPlanes: 32, KernelSize: 3}
}

// Tiny is the small test configuration of the golden data: the same network
// over 32-channel image embeddings.
func Tiny() Config {
	c := Default()
	c.Name, c.FeatDim = "tiny", 32
	return c
}

// widths are the output channels of layer2, layer3 and layer4.
func (c Config) widths() [3]int { return [3]int{128, 64, c.MidPlanes} }

// Validate checks that the configuration describes a buildable network.
func (c Config) Validate() error {
	if c.FeatDim <= 0 || c.MidPlanes <= 0 {
		return fmt.Errorf("m2m: config %q: FeatDim %d, MidPlanes %d must be positive", c.Name, c.FeatDim, c.MidPlanes)
	}
	for i := 1; i < 4; i++ {
		if c.Layers[i] < 1 {
			return fmt.Errorf("m2m: config %q: layer%d has %d blocks, want at least 1", c.Name, i+1, c.Layers[i])
		}
	}
	if c.KernelSize != 3 && c.KernelSize != 5 {
		return fmt.Errorf("m2m: config %q: kernel size %d, want 3 or 5", c.Name, c.KernelSize)
	}
	return nil
}

// DetectConfig reads the configuration off an M2M state dict's shapes:
// FeatDim from layer2's first convolution, MidPlanes from conv1, the block
// counts from the layerN.i names and the kernel size from refine_OS1.
func DetectConfig(s *weights.Store) (Config, error) {
	sh, ok := s.Shape("layer2.0.conv1.module.weight_bar")
	if !ok || len(sh) != 4 || sh[0] <= 4 {
		return Config{}, fmt.Errorf("m2m: %s: no valid %q: not a MAM (SAM_Decoder_Deep) state dict", s.Source(), s.Prefix()+"layer2.0.conv1.module.weight_bar")
	}
	c := Default()
	c.Name, c.FeatDim = "detected", sh[0]-4
	if c.FeatDim == 256 {
		c.Name = "sam_decoder_deep"
	} else if c.FeatDim == 32 {
		c.Name = "tiny"
	}
	mid, ok := s.Shape("conv1.module.weight_bar")
	if !ok || len(mid) != 4 {
		return Config{}, fmt.Errorf("m2m: %s: no valid %q", s.Source(), s.Prefix()+"conv1.module.weight_bar")
	}
	c.MidPlanes = mid[0]
	for l := 0; l < 4; l++ {
		n := 0
		for s.Has(fmt.Sprintf("layer%d.%d.bn1.weight", l+1, n)) {
			n++
		}
		c.Layers[l] = n
	}
	if c.Layers[0] == 0 {
		c.Layers[0] = 2 // never built by the reference, so never stored
	}
	k, ok := s.Shape("refine_OS1.0.weight")
	if !ok || len(k) != 4 {
		return Config{}, fmt.Errorf("m2m: %s: no valid %q", s.Source(), s.Prefix()+"refine_OS1.0.weight")
	}
	c.KernelSize = k[2]
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("m2m: %s: %w", s.Source(), err)
	}
	return c, nil
}
