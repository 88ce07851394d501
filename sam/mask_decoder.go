package sam

// This file mirrors segment_anything/modeling/mask_decoder.py: MaskDecoder
// and MLP.

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

// MaskDecoder predicts mask logits and their IoU scores from image
// embeddings and prompt embeddings with a TwoWayTransformer. The graph
// depends on the number of prompt tokens, so one is compiled per token
// count and kept. A MaskDecoder is safe for concurrent use (runs are
// serialised).
type MaskDecoder struct {
	cfg             Config
	numMaskTokens   int
	iouToken        nn.Weight // (1, D)
	maskTokens      nn.Weight // (M, D)
	transformer     twoWayTransformer
	outputUpscaling outputUpscaling
	hypernetworks   []mlp // one per mask token: D -> D/8
	iouHead         mlp   // D -> M

	mu     sync.Mutex
	graphs map[int]*decoderGraph // by number of sparse prompt tokens
	// The flattened image side of the last run, reused while the same
	// embeddings and PE and, without a mask prompt, the same dense
	// embedding come back.
	srcKey, peKey [2]flatKey
	srcFlat       []float32 // (E*E, D): image_embeddings + dense, flattened
	peFlat        []float32 // (E*E, D): image_pe, flattened
	srcPE         []float32 // (srcFlat + peFlat) packed for the products (packKeysPE)
}

// flatKey identifies a tensor and its storage.
type flatKey struct {
	t    *nn.Tensor
	data *float32
}

func keyOf(t *nn.Tensor) flatKey {
	if t == nil || len(t.Data) == 0 {
		return flatKey{}
	}
	return flatKey{t, &t.Data[0]}
}

// decoderGraph is the compiled decoder for one sparse token count.
type decoderGraph struct {
	m     *nn.Machine
	masks *nn.Node // (M, 4E*4E) logits of every mask token
	iou   *nn.Node // (1, M)
}

// Names of the decoder graph's inputs.
const (
	inSrcFlat = "src"     // image_embeddings + dense, flattened: (E*E, D)
	inPEFlat  = "pos_src" // image_pe, flattened: (E*E, D)
	inSrcPE   = "src_pe"  // (src + pos_src), packed (packKeysPE)
	inSparse  = "sparse_prompt_embeddings"
)

// newMaskDecoder fetches the decoder's parameters from p (the
// "mask_decoder." view); cfg must be valid.
func newMaskDecoder(p *nn.Params, cfg Config) *MaskDecoder {
	dim, m := cfg.PromptDim, cfg.NumMultimask+1
	d := &MaskDecoder{
		cfg:             cfg,
		numMaskTokens:   m,
		iouToken:        p.Weight("iou_token.weight", 1, dim),
		maskTokens:      p.Weight("mask_tokens.weight", m, dim),
		transformer:     newTwoWayTransformer(p.Sub("transformer"), cfg.DecoderDepth, dim, cfg.DecoderHeads, cfg.DecoderMLP),
		outputUpscaling: newOutputUpscaling(p.Sub("output_upscaling"), dim),
		graphs:          map[int]*decoderGraph{},
	}
	for i := 0; i < m; i++ {
		d.hypernetworks = append(d.hypernetworks, newMLP(p.Sub("output_hypernetworks_mlps").Index(i), dim, dim, dim/8, 3))
	}
	d.iouHead = newMLP(p.Sub("iou_prediction_head"), dim, cfg.IoUHidden, m, cfg.IoUDepth)
	return d
}

// NewMaskDecoder builds the mask decoder from s, the "mask_decoder." view
// of a SAM checkpoint, checking every tensor's shape against cfg.
func NewMaskDecoder(s *weights.Store, cfg Config) (*MaskDecoder, error) {
	return build(s, cfg, "mask decoder", false, newMaskDecoder)
}

// build makes the decoder graph for n sparse prompt tokens
// (MaskDecoder.predict_masks, all mask tokens).
func (d *MaskDecoder) build(n int) (*decoderGraph, error) {
	g := nn.NewGraph()
	dim, e := d.cfg.PromptDim, d.cfg.EmbedSize()

	// tokens = cat(iou_token, mask_tokens, sparse): (1+M+n, D)
	parts := []*nn.Node{d.iouToken.Node(g), d.maskTokens.Node(g)}
	if n > 0 {
		parts = append(parts, g.Input(inSparse, n, dim))
	}
	tokens := g.Concat(0, parts...) // (T, D)

	// src = image_embeddings + dense prompt; pos_src = image_pe; both
	// flattened with flatten(2).permute(0, 2, 1), batch 1 dropped, by
	// PredictMasks (flattenInputs): (1, D, E, E) -> (E*E, D).
	src := g.Input(inSrcFlat, e*e, dim)                // (E*E, D)
	pos := g.Input(inPEFlat, e*e, dim)                 // (E*E, D)
	srcPE := g.Input(inSrcPE, nn.PackedBLen(dim, e*e)) // (src + pos), packed

	hs, src := d.transformer.forward(g, src, pos, srcPE, tokens) // (T, D), (E*E, D)
	iouTokenOut := g.Slice(hs, 0, 0, 1)                          // (1, D)
	maskTokensOut := g.Slice(hs, 0, 1, 1+d.numMaskTokens)        // (M, D)

	// hyper_in[i] = output_hypernetworks_mlps[i](mask_tokens_out[i]): (M, D/8)
	hyper := make([]*nn.Node, d.numMaskTokens)
	for i, h := range d.hypernetworks {
		hyper[i] = h.forward(g, g.Slice(maskTokensOut, 0, i, i+1)) // (1, D/8)
	}
	hyperIn := g.Concat(0, hyper...) // (M, D/8)

	// masks = hyper_in @ output_upscaling(src): (M, 4E*4E)
	masks := d.outputUpscaling.masks(g, src, hyperIn, e)
	iou := d.iouHead.forward(g, iouTokenOut) // (1, M)

	mach, err := g.Compile()
	if err != nil {
		return nil, fmt.Errorf("sam: mask decoder graph for %d prompt tokens: %w", n, err)
	}
	return &decoderGraph{m: mach, masks: masks, iou: iou}, nil
}

// flattenInputs returns image_embeddings + dense and image_pe flattened to
// (E*E, D), and their sum packed, reusing the last ones when the same
// tensors come back. d.mu must be held.
func (d *MaskDecoder) flattenInputs(emb, pe, dense *nn.Tensor) (src, pos, srcPE []float32) {
	dim, e := d.cfg.PromptDim, d.cfg.EmbedSize()
	changed := false
	if k := [2]flatKey{keyOf(emb), keyOf(dense)}; d.srcFlat == nil || d.srcKey != k {
		if d.srcFlat == nil {
			d.srcFlat = make([]float32, e*e*dim)
		}
		flattenAdd(d.srcFlat, emb.Data, dense.Data, dim, e*e)
		d.srcKey, changed = k, true
	}
	if k := [2]flatKey{keyOf(pe)}; d.peFlat == nil || d.peKey != k {
		if d.peFlat == nil {
			d.peFlat = make([]float32, e*e*dim)
		}
		flattenAdd(d.peFlat, pe.Data, nil, dim, e*e)
		d.peKey, changed = k, true
	}
	// The first block's image side, the same for every prompt on an image
	// (without a mask prompt), packed once.
	if n := nn.PackedBLen(dim, e*e); len(d.srcPE) != n {
		d.srcPE, changed = make([]float32, n), true
	}
	if changed {
		packKeysPEInto(d.srcPE, d.srcFlat, d.peFlat, e*e, dim)
	}
	return d.srcFlat, d.peFlat, d.srcPE
}

// graph returns the compiled graph for n sparse tokens, building it once.
// d.mu must be held.
func (d *MaskDecoder) graph(n int) (*decoderGraph, error) {
	if dg, ok := d.graphs[n]; ok {
		return dg, nil
	}
	dg, err := d.build(n)
	if err != nil {
		return nil, err
	}
	d.graphs[n] = dg
	return dg, nil
}

// PredictMasks runs the decoder and returns the logits of every mask token
// (1, M, 4E, 4E) and their IoU predictions (1, M), M = NumMultimask+1.
// imageEmbeddings, imagePE and dense are (1, D, E, E); sparse is (1, N, D)
// (N may be 0: pass nil).
func (d *MaskDecoder) PredictMasks(ctx context.Context, imageEmbeddings, imagePE, sparse, dense *nn.Tensor) (masks, iou *nn.Tensor, err error) {
	dim, e := d.cfg.PromptDim, d.cfg.EmbedSize()
	for _, c := range []struct {
		name string
		t    *nn.Tensor
	}{{"image_embeddings", imageEmbeddings}, {"image_pe", imagePE}, {"dense_prompt_embeddings", dense}} {
		if c.t == nil {
			return nil, nil, fmt.Errorf("sam: mask decoder: %s is nil: %w", c.name, ErrInput)
		}
		if !c.t.HasShape(1, dim, e, e) {
			return nil, nil, fmt.Errorf("sam: mask decoder: %s has shape %v, want (1, %d, %d, %d): %w", c.name, c.t.Shape, dim, e, e, ErrInput)
		}
	}
	n := 0
	if sparse != nil {
		s := sparse.Shape
		if len(s) != 3 || s[0] != 1 || s[2] != dim || len(sparse.Data) != s[1]*dim {
			return nil, nil, fmt.Errorf("sam: mask decoder: sparse prompt embeddings have shape %v, want (1, N, %d): %w", s, dim, ErrInput)
		}
		n = s[1]
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	dg, err := d.graph(n)
	if err != nil {
		return nil, nil, err
	}
	in := make(map[string][]float32, 4)
	in[inSrcFlat], in[inPEFlat], in[inSrcPE] = d.flattenInputs(imageEmbeddings, imagePE, dense)
	if n > 0 {
		in[inSparse] = sparse.Data
	}
	if err := dg.m.Exec(ctx, in); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, nil, cerr
		}
		return nil, nil, fmt.Errorf("sam: mask decoder: %w", err)
	}
	side := 4 * e
	masks = nn.NewTensor(slices.Clone(nn.Values(dg.masks)), 1, d.numMaskTokens, side, side)
	iou = nn.NewTensor(slices.Clone(nn.Values(dg.iou)), 1, d.numMaskTokens)
	return masks, iou, nil
}

// Forward is MaskDecoder.forward: it runs PredictMasks and keeps mask
// tokens 1..M-1 when multimask is set, else token 0. It returns low-res
// mask logits (1, K, 4E, 4E) and IoU predictions (1, K), K = 3 or 1.
func (d *MaskDecoder) Forward(ctx context.Context, imageEmbeddings, imagePE, sparse, dense *nn.Tensor, multimask bool) (masks, iou *nn.Tensor, err error) {
	all, allIoU, err := d.PredictMasks(ctx, imageEmbeddings, imagePE, sparse, dense)
	if err != nil {
		return nil, nil, err
	}
	lo, hi := 0, 1
	if multimask {
		lo, hi = 1, d.numMaskTokens
	}
	side := 4 * d.cfg.EmbedSize()
	plane := side * side
	masks = nn.NewTensor(all.Data[lo*plane:hi*plane], 1, hi-lo, side, side)
	iou = nn.NewTensor(allIoU.Data[lo:hi], 1, hi-lo)
	return masks, iou, nil
}

// outputUpscaling is MaskDecoder.output_upscaling: ConvTranspose2d(D, D/4,
// 2, 2), LayerNorm2d(D/4), GELU, ConvTranspose2d(D/4, D/8, 2, 2), GELU.
type outputUpscaling struct {
	conv0 convTranspose2x2
	norm1 layerNorm2d
	conv3 convTranspose2x2
}

func newOutputUpscaling(p *nn.Params, dim int) outputUpscaling {
	return outputUpscaling{
		conv0: newConvTranspose2x2(p.Sub("0"), dim, dim/4),
		norm1: newLayerNorm2d(p.Sub("1"), dim/4),
		conv3: newConvTranspose2x2(p.Sub("3"), dim/4, dim/8),
	}
}

// masks is (hyper_in @ output_upscaling(src).view(1, D/8, 16*E*E)), the
// masks of every token: src (E*E, D), the transformer's image side, and
// hyper_in (M, D/8) -> (M, 4E*4E). The upscaled pixels stay in the order
// the 2x2 transposed convolutions make them (fused.go) until the masks are
// written out.
func (u outputUpscaling) masks(g *nn.Graph, src, hyperIn *nn.Node, e int) *nn.Node {
	x := u.conv0.forward(g, src)                  // (E*E*4, D/4)
	x = u.norm1.forwardChannelsLastGELU(g, x)     // LayerNorm2d over each pixel's D/4 channels, GELU
	return maskProduct(g, x, u.conv3, hyperIn, e) // ConvT, GELU, hyper_in @ upscaled: (M, 4E*4E)
}

// mlp is mask_decoder.py's MLP: num_layers Linear layers, ReLU between
// them, none after the last (SAM uses no sigmoid output).
type mlp struct {
	layers []nn.Linear
}

func newMLP(p *nn.Params, in, hidden, out, numLayers int) mlp {
	var m mlp
	for i := 0; i < numLayers; i++ {
		a, b := hidden, hidden
		if i == 0 {
			a = in
		}
		if i == numLayers-1 {
			b = out
		}
		m.layers = append(m.layers, nn.NewLinear(p.Sub("layers").Index(i), a, b))
	}
	return m
}

// forward: x (N, in) -> [Linear -> ReLU] x (layers-1) -> Linear (N, out).
func (m mlp) forward(g *nn.Graph, x *nn.Node) *nn.Node {
	for i, l := range m.layers {
		x = l.Forward(g, x)
		if i < len(m.layers)-1 {
			x = g.ReLU(x)
		}
	}
	return x
}
