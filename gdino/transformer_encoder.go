package gdino

import (
	"fmt"
	"math"
	"strconv"

	"github.com/mam-go/mam-go/nn"
)

// The feature enhancer (transformer.py TransformerEncoder): per layer, the
// image-text fusion, the text self-attention layer, then the deformable
// self-attention layer over the image tokens of every level.

// textPosFeats is the text position embedding's width (get_sine_pos_embed's
// num_pos_feats, hard-coded to 256 by the reference).
const textPosFeats = 256

// deformableTransformerEncoderLayer is DeformableTransformerEncoderLayer
// (post-norm, ReLU): deformable self-attention over the levels, then the
// feed-forward network.
type deformableTransformerEncoderLayer struct {
	selfAttn         *msDeformAttn
	norm1, norm2     nn.LayerNorm
	linear1, linear2 nn.Linear
}

// newDeformableTransformerEncoderLayer fetches an image layer from p
// ("transformer.encoder.layers.<i>").
func newDeformableTransformerEncoderLayer(p *nn.Params, cfg Config) *deformableTransformerEncoderLayer {
	d := cfg.HiddenDim
	return &deformableTransformerEncoderLayer{
		selfAttn: newMSDeformAttn(p.Sub("self_attn"), d, cfg.Heads, cfg.NumLevels, cfg.EncPoints),
		norm1:    nn.NewLayerNorm(p.Sub("norm1"), d, lnEps),
		norm2:    nn.NewLayerNorm(p.Sub("norm2"), d, lnEps),
		linear1:  nn.NewLinear(p.Sub("linear1"), d, cfg.FFN),
		linear2:  nn.NewLinear(p.Sub("linear2"), cfg.FFN, d),
	}
}

// forward runs the layer on src (S, d) with the level position embedding
// pos (S, d) and the reference points ref (S, levels, 2). It returns the
// output after the attention and norm1 (sa) and the layer's output (out),
// both (S, d); with dump not nil the attention's internals are kept under
// prefix (msDeformAttn.forwardDump).
func (l *deformableTransformerEncoderLayer) forward(g *nn.Graph, src, pos, ref *nn.Node, shapes [][2]int, starts []int, dump map[string]*nn.Node, prefix string) (sa, out *nn.Node) {
	// src + attention: the residual summed in output_proj's product
	sum := l.selfAttn.forwardDump(g, addOp(g, src, pos), src, ref, shapes, starts, dump, prefix, src) // (S, d)
	sa = l.norm1.Forward(g, sum)                                                                      // (S, d)
	out = l.norm2.Forward(g, ffnResidual(g, sa, l.linear1, l.linear2))                                // (S, d)
	return sa, out
}

// ffnResidual is forward_ffn before its norm, x + linear2(relu(linear1(x)))
// for x (rows, d), as one op over blocks of rows, so that the (rows, ffn)
// hidden values are never formed whole: (rows, d).
func ffnResidual(g *nn.Graph, x *nn.Node, linear1, linear2 nn.Linear) *nn.Node {
	if x == nil {
		return nil
	}
	xs := nn.Shape(x)
	in1, out1 := linearDims(linear1)
	in2, out2 := linearDims(linear2)
	if len(xs) != 2 || xs[1] != in1 || in2 != out1 || out2 != in1 {
		return g.Errorf("gdino: ffn: input %v for linears %d -> %d -> %d", xs, in1, out1, out2)
	}
	return mlpResidual(g, "FFN", x, x, linear1, linear2, actReLU)
}

// encoder is TransformerEncoder with its text enhancer and fusion layers.
type encoder struct {
	layers       []*deformableTransformerEncoderLayer
	textLayers   []*transformerEncoderLayer
	fusionLayers []*biAttentionBlock
	dim, levels  int
}

// newEncoder fetches the encoder from p ("transformer.encoder"): layers.<i>,
// text_layers.<i> and fusion_layers.<i> for i < cfg.EncLayers.
func newEncoder(p *nn.Params, cfg Config) *encoder {
	e := &encoder{dim: cfg.HiddenDim, levels: cfg.NumLevels}
	for i := 0; i < cfg.EncLayers; i++ {
		e.layers = append(e.layers, newDeformableTransformerEncoderLayer(p.Sub("layers").Index(i), cfg))
		e.textLayers = append(e.textLayers, newTransformerEncoderLayer(p.Sub("text_layers").Index(i),
			cfg.HiddenDim, cfg.TextEnhancerHeads(), cfg.TextEnhancerFFN()))
		e.fusionLayers = append(e.fusionLayers, newBiAttentionBlock(p.Sub("fusion_layers").Index(i), cfg))
	}
	return e
}

// forward runs the encoder on the flattened levels src (S, d) (level by
// level, each (H*W, d) row-major) with their position embedding pos (S, d)
// (lvl_pos_embed_flatten), shapes[l] = (H_l, W_l), and on the text tokens
// text (n, d) (encoded_text) with their n x n sub-sentence mask textMask
// (true = may attend) and position ids. It returns the image memory (S, d)
// and the text memory (n, d).
//
// Batch 1 has no padding: every valid ratio is 1 and no key padding mask
// is applied, on the image or on the text side.
//
// With dump not nil it keeps, under the golden names: enc_reference_points
// (S, levels, 2), pos_text (n, 256), and per layer i enc<i>_fused_img,
// enc<i>_fused_text, enc<i>_text_sa, enc<i>_memory_text, enc<i>_img_sa,
// enc<i>_memory and the deformable attention's internals
// enc<i>_deform_value, _sampling_locations, _attention_weights, _core.
func (e *encoder) forward(g *nn.Graph, src, pos, text *nn.Node, textMask []bool, positionIDs []int, shapes [][2]int, dump map[string]*nn.Node) (memory, memoryText *nn.Node) {
	if g.Err() != nil {
		return nil, nil
	}
	starts, s, err := e.check(src, pos, text, textMask, positionIDs, shapes)
	if err != nil {
		g.Fail(fmt.Errorf("gdino: encoder: %w", err))
		return nil, nil
	}
	n := len(positionIDs)
	// The mask is read when the graph runs: a copy the caller cannot change.
	textMask = append([]bool(nil), textMask...)
	ref := g.Param("transformer.encoder.reference_points", referencePoints(shapes, e.levels), s, e.levels, 2) // (S, levels, 2)
	posText := g.Param("transformer.encoder.pos_text", textPosEmbed(positionIDs), n, textPosFeats)            // (n, 256)
	encDump(g, dump, "enc_reference_points", ref)
	encDump(g, dump, "pos_text", posText)
	img := src
	for i, layer := range e.layers {
		id := "enc" + strconv.Itoa(i)
		img, text = e.fusionLayers[i].forward(g, img, text) // (S, d), (n, d)
		encDump(g, dump, id+"_fused_img", img)
		encDump(g, dump, id+"_fused_text", text)
		var sa *nn.Node
		sa, text = e.textLayers[i].forward(g, text, posText, textMask) // (n, d)
		encDump(g, dump, id+"_text_sa", sa)
		encDump(g, dump, id+"_memory_text", text)
		sa, img = layer.forward(g, img, pos, ref, shapes, starts, dump, id+"_deform") // (S, d)
		encDump(g, dump, id+"_img_sa", sa)
		encDump(g, dump, id+"_memory", img)
	}
	return img, text
}

// check validates the encoder's inputs and returns the levels' start rows
// and the number of image tokens.
func (e *encoder) check(src, pos, text *nn.Node, textMask []bool, positionIDs []int, shapes [][2]int) ([]int, int, error) {
	if len(shapes) != e.levels || len(shapes) == 0 {
		return nil, 0, fmt.Errorf("%d level shapes for %d levels", len(shapes), e.levels)
	}
	starts := make([]int, len(shapes))
	s := 0
	for l, sh := range shapes {
		if sh[0] <= 0 || sh[1] <= 0 {
			return nil, 0, fmt.Errorf("level %d has shape %v", l, sh)
		}
		starts[l] = s
		s += sh[0] * sh[1]
	}
	n := len(positionIDs)
	switch {
	case n == 0:
		return nil, 0, fmt.Errorf("no text token")
	case len(textMask) != n*n:
		return nil, 0, fmt.Errorf("text mask of %d values for %d tokens", len(textMask), n)
	case e.dim != textPosFeats:
		return nil, 0, fmt.Errorf("width %d (the text position embedding has %d features)", e.dim, textPosFeats)
	}
	for name, x := range map[string]struct {
		n    *nn.Node
		rows int
	}{"image tokens": {src, s}, "position embedding": {pos, s}, "text tokens": {text, n}} {
		if xs := nn.Shape(x.n); len(xs) != 2 || xs[0] != x.rows || xs[1] != e.dim {
			return nil, 0, fmt.Errorf("%s of shape %v, want (%d, %d)", name, xs, x.rows, e.dim)
		}
	}
	return starts, s, nil
}

// encDump keeps x under name in dump, when dump is not nil.
func encDump(g *nn.Graph, dump map[string]*nn.Node, name string, x *nn.Node) {
	if dump != nil && x != nil {
		dump[name] = g.Keep(x)
	}
}

// referencePoints is TransformerEncoder.get_reference_points with every
// valid ratio 1: token (i, j) of level l (H, W) gets ((j + 0.5) / W,
// (i + 0.5) / H) in (x, y) order, repeated for each of the levels it
// samples: (S, levels, 2).
func referencePoints(shapes [][2]int, levels int) []float32 {
	var ref []float32
	for _, sh := range shapes {
		h, w := sh[0], sh[1]
		for i := 0; i < h; i++ {
			y := (float32(i) + 0.5) / float32(h)
			for j := 0; j < w; j++ {
				x := (float32(j) + 0.5) / float32(w)
				for l := 0; l < levels; l++ {
					ref = append(ref, x, y)
				}
			}
		}
	}
	return ref
}

// textPosEmbed is get_sine_pos_embed(position_ids, 256, temperature 10000,
// exchange_xy=False): for token t with position id p and k < 256, feature k
// is sin(p*2pi / 10000^(2*floor(k/2)/256)) for even k, cos(...) for odd k,
// with the argument formed in float32 as the reference forms it.
func textPosEmbed(positionIDs []int) []float32 {
	var dimT [textPosFeats]float32
	for k := range dimT {
		dimT[k] = float32(math.Pow(10000, float64(2*(k/2))/textPosFeats))
	}
	scale := float32(2 * math.Pi)
	out := make([]float32, len(positionIDs)*textPosFeats)
	for t, p := range positionIDs {
		row := out[t*textPosFeats : (t+1)*textPosFeats]
		for k := range row {
			v := float64(float32(p) * scale / dimT[k])
			if k%2 == 0 {
				row[k] = float32(math.Sin(v))
			} else {
				row[k] = float32(math.Cos(v))
			}
		}
	}
	return out
}
