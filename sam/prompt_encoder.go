package sam

// This file mirrors segment_anything/modeling/prompt_encoder.py:
// PromptEncoder and PositionEmbeddingRandom.

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

// PromptEncoder embeds point, box and mask prompts for the mask decoder.
// It is safe for concurrent use.
type PromptEncoder struct {
	cfg             Config
	peLayer         positionEmbeddingRandom
	pointEmbeddings [4][]float32 // neg point, pos point, box top-left, box bottom-right (D each)
	notAPoint       []float32    // not_a_point_embed (D)
	noMask          []float32    // no_mask_embed (D)
	maskDownscaling maskDownscaling
	densePE         *nn.Tensor // get_dense_pe(), (1, D, E, E)
	noMaskDense     *nn.Tensor // the dense embedding without a mask prompt

	mu      sync.Mutex
	maskM   *nn.Machine // mask_downscaling, built on first use
	maskOut *nn.Node
}

const inMask = "mask_input"

// newPromptEncoder fetches the prompt encoder's parameters from p (the
// "prompt_encoder." view) and computes its constant embeddings; cfg must
// be valid.
func newPromptEncoder(p *nn.Params, cfg Config) *PromptEncoder {
	dim, e := cfg.PromptDim, cfg.EmbedSize()
	pe := &PromptEncoder{
		cfg:             cfg,
		peLayer:         positionEmbeddingRandom{p.Floats("pe_layer.positional_encoding_gaussian_matrix", 2, dim/2)},
		notAPoint:       p.Floats("not_a_point_embed.weight", 1, dim),
		noMask:          p.Floats("no_mask_embed.weight", 1, dim),
		maskDownscaling: newMaskDownscaling(p.Sub("mask_downscaling"), cfg.MaskInChans, dim),
	}
	for i := range pe.pointEmbeddings {
		pe.pointEmbeddings[i] = p.Sub("point_embeddings").Index(i).Floats("weight", 1, dim)
	}
	pe.densePE = pe.peLayer.forward(e)
	// no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, E, E)
	pe.noMaskDense = nn.NewTensor(nil, 1, dim, e, e)
	for c := 0; c < dim; c++ {
		plane := pe.noMaskDense.Data[c*e*e : (c+1)*e*e]
		for i := range plane {
			plane[i] = pe.noMask[c]
		}
	}
	return pe
}

// NewPromptEncoder builds the prompt encoder from s, the "prompt_encoder."
// view of a SAM checkpoint, checking shapes against cfg.
func NewPromptEncoder(s *weights.Store, cfg Config) (*PromptEncoder, error) {
	return build(s, cfg, "prompt encoder", false, newPromptEncoder)
}

// positionEmbeddingRandom is PositionEmbeddingRandom: positional encoding
// of normalised coordinates with a random spatial frequency matrix.
type positionEmbeddingRandom struct {
	gaussian []float32 // positional_encoding_gaussian_matrix (2, D/2)
}

// peEncoding is _pe_encoding of one point (x, y) normalised to [0, 1]:
// [sin(2pi (2p-1) G), cos(2pi (2p-1) G)] written to out (D values). It
// follows the reference's float32 steps.
func (pe positionEmbeddingRandom) peEncoding(out []float32, x, y float32) {
	f := len(pe.gaussian) / 2
	gx, gy := pe.gaussian[:f], pe.gaussian[f:]
	cx, cy := 2*x-1, 2*y-1 // coords = 2 * coords - 1
	const twoPi = float32(2 * math.Pi)
	for i := 0; i < f; i++ {
		a := float32(cx*gx[i]) + float32(cy*gy[i]) // coords @ G
		a = twoPi * a                              // 2 * pi * coords
		out[i] = float32(math.Sin(float64(a)))
		out[f+i] = float32(math.Cos(float64(a)))
	}
}

// forward is PositionEmbeddingRandom.forward over the e x e grid: the
// encoding of ((j+0.5)/e, (i+0.5)/e) at row i, column j -> (1, D, e, e).
func (pe positionEmbeddingRandom) forward(e int) *nn.Tensor {
	dim := len(pe.gaussian)
	out := nn.NewTensor(nil, 1, dim, e, e)
	v := make([]float32, dim)
	for i := 0; i < e; i++ {
		y := (float32(i+1) - 0.5) / float32(e) // grid.cumsum(0) - 0.5, / h
		for j := 0; j < e; j++ {
			x := (float32(j+1) - 0.5) / float32(e)
			pe.peEncoding(v, x, y)
			for c := 0; c < dim; c++ { // permute(2, 0, 1): (E, E, D) -> (D, E, E)
				out.Data[(c*e+i)*e+j] = v[c]
			}
		}
	}
	return out
}

// forwardWithCoords is forward_with_coords for one pixel coordinate of an
// s x s input (already shifted to the pixel centre).
func (pe positionEmbeddingRandom) forwardWithCoords(out []float32, x, y float32, s int) {
	pe.peEncoding(out, x/float32(s), y/float32(s))
}

// DensePE is get_dense_pe: the positional encoding of the embedding grid,
// (1, D, E, E). It is shared: do not modify it.
func (pe *PromptEncoder) DensePE() *nn.Tensor { return pe.densePE }

// Forward embeds the prompts: points and box in the model's input frame
// (resized pixels), mask a low-res logits prompt (1, 1, 4E, 4E) or nil.
// It returns sparse embeddings (1, N, D), N = len(points) + 1 padding point
// when there is no box, + 2 box corners; sparse is nil when there are no
// points and no box. dense is (1, D, E, E): the downscaled mask, or
// no_mask_embed at every position (then shared between calls: do not
// modify it).
func (pe *PromptEncoder) Forward(ctx context.Context, points []Point, box *Box, mask *nn.Tensor) (sparse, dense *nn.Tensor, err error) {
	if err := checkPoints(points, true); err != nil {
		return nil, nil, fmt.Errorf("sam: prompt encoder: %w", err)
	}
	if err := checkBox(box); err != nil {
		return nil, nil, fmt.Errorf("sam: prompt encoder: %w", err)
	}
	sparse = pe.embedSparse(points, box)
	if mask != nil {
		dense, err = pe.embedMask(ctx, mask)
		if err != nil {
			return nil, nil, err
		}
		return sparse, dense, nil
	}
	return sparse, pe.noMaskDense, nil
}

// embedSparse is _embed_points and _embed_boxes, concatenated: (1, N, D),
// or nil for no points and no box.
func (pe *PromptEncoder) embedSparse(points []Point, box *Box) *nn.Tensor {
	dim, s := pe.cfg.PromptDim, pe.cfg.ImageSize
	n := 0
	if len(points) > 0 {
		n = len(points)
		if box == nil {
			n++ // padding point
		}
	}
	if box != nil {
		n += 2
	}
	if n == 0 {
		return nil
	}
	out := nn.NewTensor(nil, 1, n, dim)
	row := func(i int) []float32 { return out.Data[i*dim : (i+1)*dim] }
	r := 0
	if len(points) > 0 {
		// _embed_points: points + 0.5, a padding point (0, 0) labelled -1
		// when there is no box.
		all := points
		if box == nil {
			all = append(slices.Clone(points), Point{Label: -1})
		}
		for _, pt := range all {
			o := row(r)
			r++
			if pt.Label == -1 {
				copy(o, pe.notAPoint) // pe zeroed, + not_a_point_embed
				continue
			}
			pe.peLayer.forwardWithCoords(o, float32(pt.X)+0.5, float32(pt.Y)+0.5, s)
			addTo(o, pe.pointEmbeddings[pt.Label]) // label 0 -> point_embeddings.0, 1 -> .1
		}
	}
	if box != nil {
		// _embed_boxes: corners + 0.5 -> pe + point_embeddings.2 / .3
		pe.peLayer.forwardWithCoords(row(r), float32(box.X0)+0.5, float32(box.Y0)+0.5, s)
		addTo(row(r), pe.pointEmbeddings[2])
		pe.peLayer.forwardWithCoords(row(r+1), float32(box.X1)+0.5, float32(box.Y1)+0.5, s)
		addTo(row(r+1), pe.pointEmbeddings[3])
	}
	return out
}

// embedMask is _embed_masks: mask_downscaling on (1, 1, 4E, 4E) ->
// (1, D, E, E).
func (pe *PromptEncoder) embedMask(ctx context.Context, mask *nn.Tensor) (*nn.Tensor, error) {
	side, e := 4*pe.cfg.EmbedSize(), pe.cfg.EmbedSize()
	if !mask.HasShape(1, 1, side, side) {
		return nil, fmt.Errorf("sam: prompt encoder: mask prompt has shape %v, want (1, 1, %d, %d): %w", mask.Shape, side, side, ErrBadPrompt)
	}
	pe.mu.Lock()
	defer pe.mu.Unlock()
	if pe.maskM == nil {
		g := nn.NewGraph()
		x := g.Input(inMask, 1, 1, side, side)
		out := pe.maskDownscaling.forward(g, x)
		m, err := g.Compile()
		if err != nil {
			return nil, fmt.Errorf("sam: prompt encoder: mask downscaling graph: %w", err)
		}
		pe.maskM, pe.maskOut = m, out
	}
	if err := pe.maskM.Exec(ctx, map[string][]float32{inMask: mask.Data}); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, fmt.Errorf("sam: prompt encoder: mask prompt: %w", err)
	}
	return nn.NewTensor(nn.Values(pe.maskOut), 1, pe.cfg.PromptDim, e, e), nil
}

// maskDownscaling is PromptEncoder.mask_downscaling: Conv2d(1, C/4, 2, 2),
// LayerNorm2d, GELU, Conv2d(C/4, C, 2, 2), LayerNorm2d, GELU,
// Conv2d(C, D, 1).
type maskDownscaling struct {
	conv0, conv3, conv6 nn.Conv2d
	ln1, ln4            layerNorm2d
}

func newMaskDownscaling(p *nn.Params, mc, dim int) maskDownscaling {
	return maskDownscaling{
		conv0: nn.NewConv2d(p.Sub("0"), 1, mc/4, 2, 2, 0),
		ln1:   newLayerNorm2d(p.Sub("1"), mc/4),
		conv3: nn.NewConv2d(p.Sub("3"), mc/4, mc, 2, 2, 0),
		ln4:   newLayerNorm2d(p.Sub("4"), mc),
		conv6: nn.NewConv2d(p.Sub("6"), mc, dim, 1, 1, 0),
	}
}

// forward: x (1, 1, 4E, 4E) -> (1, D, E, E).
func (m maskDownscaling) forward(g *nn.Graph, x *nn.Node) *nn.Node {
	x = m.conv0.Forward(g, x)       // (1, C/4, 2E, 2E)
	x = g.GELU(m.ln1.forward(g, x)) // (1, C/4, 2E, 2E)
	x = m.conv3.Forward(g, x)       // (1, C, E, E)
	x = g.GELU(m.ln4.forward(g, x)) // (1, C, E, E)
	return m.conv6.Forward(g, x)    // (1, D, E, E)
}

func addTo(dst, src []float32) {
	for i, v := range src {
		dst[i] += v
	}
}
