package gdino

import "fmt"

// Config holds every hyper-parameter of a GroundingDINO model, as the
// official config files (GroundingDINO_SwinT_OGC.py) do. Derived sizes
// (the text enhancer and fusion widths) are methods.
type Config struct {
	Name string

	// Swin backbone (backbone/swin_transformer.py).
	SwinEmbedDim  int     // C of stage 0 (96 for Swin-T)
	SwinDepths    []int   // blocks per stage
	SwinHeads     []int   // attention heads per stage
	SwinWindow    int     // window side (7)
	SwinPatch     int     // patch side (4)
	SwinMLPRatio  float64 // 4
	ReturnIndices []int   // stages whose outputs feed the encoder ([1 2 3])

	// BERT text encoder (bert-base-uncased).
	BertVocab        int     // 30522
	BertHidden       int     // 768
	BertLayers       int     // 12
	BertHeads        int     // 12
	BertIntermediate int     // 3072
	BertMaxPositions int     // 512
	BertTypeVocab    int     // 2
	BertEps          float64 // 1e-12

	// Transformer (models/GroundingDINO/transformer.py).
	HiddenDim  int // d (256; several sizes in the official code assume it)
	Heads      int // nheads (8)
	FFN        int // dim_feedforward (2048)
	EncLayers  int // 6
	DecLayers  int // 6
	NumQueries int // 900
	NumLevels  int // num_feature_levels (4)
	EncPoints  int // enc_n_points (4)
	DecPoints  int // dec_n_points (4)
	MaxTextLen int // 256
	PETempH    float64
	PETempW    float64

	// Preprocessing (datasets/transforms.py RandomResize).
	ResizeShort int // 800
	ResizeMax   int // 1333
}

// SwinTOGC is groundingdino_swint_ogc.pth's configuration
// (GroundingDINO_SwinT_OGC.py).
func SwinTOGC() Config {
	return Config{
		Name:         "swint_ogc",
		SwinEmbedDim: 96, SwinDepths: []int{2, 2, 6, 2}, SwinHeads: []int{3, 6, 12, 24},
		SwinWindow: 7, SwinPatch: 4, SwinMLPRatio: 4, ReturnIndices: []int{1, 2, 3},
		BertVocab: 30522, BertHidden: 768, BertLayers: 12, BertHeads: 12, BertIntermediate: 3072,
		BertMaxPositions: 512, BertTypeVocab: 2, BertEps: 1e-12,
		HiddenDim: 256, Heads: 8, FFN: 2048, EncLayers: 6, DecLayers: 6, NumQueries: 900,
		NumLevels: 4, EncPoints: 4, DecPoints: 4, MaxTextLen: 256, PETempH: 20, PETempW: 20,
		ResizeShort: 800, ResizeMax: 1333,
	}
}

// SwinBCogCoor is groundingdino_swinb_cogcoor.pth's configuration
// (GroundingDINO_SwinB_cfg.py: Swin-B 384, window 12; the rest as Swin-T).
func SwinBCogCoor() Config {
	c := SwinTOGC()
	c.Name = "swinb_cogcoor"
	c.SwinEmbedDim, c.SwinDepths, c.SwinHeads, c.SwinWindow = 128, []int{2, 2, 18, 2}, []int{4, 8, 16, 32}, 12
	return c
}

// Tiny is the reduced configuration of the golden test data: every code
// path of Swin-T OGC at a small size, with the real vocabulary.
func Tiny() Config {
	c := SwinTOGC()
	c.Name = "tiny"
	c.SwinEmbedDim, c.SwinDepths, c.SwinHeads = 12, []int{2, 2, 2, 2}, []int{1, 2, 2, 3}
	c.BertHidden, c.BertLayers, c.BertHeads, c.BertIntermediate = 32, 2, 2, 64
	c.FFN, c.EncLayers, c.DecLayers, c.NumQueries = 64, 2, 2, 30
	c.EncPoints, c.DecPoints = 2, 3
	c.PETempH, c.PETempW = 20, 30
	c.ResizeShort, c.ResizeMax = 100, 160
	return c
}

// SwinDim is the width of Swin stage i (embed * 2^i).
func (c Config) SwinDim(i int) int { return c.SwinEmbedDim << i }

// TextEnhancerHeads and TextEnhancerFFN size the text self-attention layers
// of the feature enhancer (nheads/2, dim_feedforward/2).
func (c Config) TextEnhancerHeads() int { return c.Heads / 2 }

// TextEnhancerFFN is the text enhancer's feed-forward width.
func (c Config) TextEnhancerFFN() int { return c.FFN / 2 }

// FusionDim, FusionHeads: the bi-directional fusion's attention width
// (dim_feedforward/2) and heads (nheads/2).
func (c Config) FusionDim() int { return c.FFN / 2 }

// FusionHeads is the fusion's number of heads.
func (c Config) FusionHeads() int { return c.Heads / 2 }

// Validate reports a configuration the model cannot be built from.
func (c Config) Validate() error {
	n := len(c.SwinDepths)
	switch {
	case n == 0 || len(c.SwinHeads) != n:
		return fmt.Errorf("gdino: config %q: %d Swin depths and %d head counts", c.Name, n, len(c.SwinHeads))
	case len(c.ReturnIndices) != c.NumLevels-1:
		return fmt.Errorf("gdino: config %q: %d returned stages for %d levels", c.Name, len(c.ReturnIndices), c.NumLevels)
	case c.HiddenDim != 256:
		return fmt.Errorf("gdino: config %q: hidden dim %d (the official code hard-wires 256)", c.Name, c.HiddenDim)
	case c.Heads <= 0 || c.HiddenDim%c.Heads != 0 || c.FusionHeads() <= 0 || c.FusionDim()%c.FusionHeads() != 0:
		return fmt.Errorf("gdino: config %q: %d heads for width %d", c.Name, c.Heads, c.HiddenDim)
	case c.BertHeads <= 0 || c.BertHidden%c.BertHeads != 0:
		return fmt.Errorf("gdino: config %q: %d BERT heads for width %d", c.Name, c.BertHeads, c.BertHidden)
	case c.MaxTextLen <= 0 || c.MaxTextLen > c.BertMaxPositions:
		return fmt.Errorf("gdino: config %q: max text length %d", c.Name, c.MaxTextLen)
	}
	for i := range c.SwinDepths {
		if c.SwinHeads[i] <= 0 || c.SwinDim(i)%c.SwinHeads[i] != 0 {
			return fmt.Errorf("gdino: config %q: stage %d width %d, %d heads", c.Name, i, c.SwinDim(i), c.SwinHeads[i])
		}
	}
	return nil
}

// A DumpFunc receives an intermediate tensor under the name of its golden
// file ("swin_s0_block0", "enc0_memory", "dec1_boxes", ...), its shape and
// its row-major values, which it must copy to keep.
type DumpFunc func(name string, shape []int, data []float32)
