package sam

// SAM's mask decoder (segment_anything/modeling/mask_decoder.py).

import (
	"context"
	"fmt"
	"sync"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

// MaskDecoder predicts mask logits and their IoU scores from image
// embeddings and prompt embeddings with a TwoWayTransformer. The graph
// depends on the number of prompt tokens, so one is compiled per token
// count and kept. A MaskDecoder is safe for concurrent use (runs are
// serialised).
type MaskDecoder struct {
	cfg           Config
	p             *params
	numMaskTokens int

	transformer twoWayTransformer
	upscale1    string // output_upscaling.0: ConvTranspose2d(D, D/4, k2, s2)
	upscaleLN   layerNorm2d
	upscale2    string // output_upscaling.3: ConvTranspose2d(D/4, D/8, k2, s2)
	hypernets   []mlp
	iouHead     mlp

	mu     sync.Mutex
	graphs map[int]*decoderGraph // by number of sparse prompt tokens
	// The flattened image side of the last run, reused while the same
	// (unmodified, as documented) tensors come back: every prompt on one
	// image has the same embeddings, dense PE and, without a mask prompt,
	// the same dense embedding.
	srcKey, peKey [2]flatKey
	srcFlat       *tensor.Dense // (E*E, D): image_embeddings + dense, flattened
	peFlat        *tensor.Dense // (E*E, D): image_pe, flattened
	srcPE         *tensor.Dense // (srcFlat + peFlat)^T packed for the products (packKeysPE)
}

// flatKey identifies a tensor and its storage.
type flatKey struct {
	t    *tensor.Dense
	data *float32
}

func keyOf(t *tensor.Dense) flatKey {
	if t == nil {
		return flatKey{}
	}
	return flatKey{t, &nn.F32(t)[0]}
}

// decoderGraph is the compiled decoder for one sparse token count.
type decoderGraph struct {
	m         *nn.Machine
	masks     *G.Node // (M, 4E*4E) logits of every mask token
	iou       *G.Node // (1, M)
	sparseLen int
}

// Names of the decoder's activation inputs.
const (
	inImageEmbeddings = "image_embeddings"
	inImagePE         = "image_pe"
	inSrcFlat         = "src_flat" // image_embeddings + dense, (E*E, D)
	inPEFlat          = "pos_src_flat"
	inSrcPE           = "src_pe_packed" // (src_flat + pos_src_flat)^T, packed
	inSparse          = "sparse_prompt_embeddings"
	inDense           = "dense_prompt_embeddings"
)

// NewMaskDecoder reads the mask decoder from s, the "mask_decoder." view of a
// SAM checkpoint, checking every tensor's shape against cfg.
func NewMaskDecoder(s *weights.Store, cfg Config) (*MaskDecoder, error) {
	dim := cfg.PromptDim
	if dim <= 0 || dim%8 != 0 || cfg.DecoderHeads <= 0 || (dim/2)%cfg.DecoderHeads != 0 {
		return nil, fmt.Errorf("sam: mask decoder: width %d with %d heads is not supported", dim, cfg.DecoderHeads)
	}
	if cfg.NumMultimask <= 0 || cfg.IoUDepth <= 0 || cfg.DecoderDepth <= 0 {
		return nil, fmt.Errorf("sam: mask decoder: bad config (multimask %d, iou depth %d, depth %d)", cfg.NumMultimask, cfg.IoUDepth, cfg.DecoderDepth)
	}
	d := &MaskDecoder{
		cfg:           cfg,
		p:             newParams(s),
		numMaskTokens: cfg.NumMultimask + 1,
		transformer:   newTwoWayTransformer("transformer", cfg.DecoderDepth, dim, cfg.DecoderHeads, cfg.DecoderMLP),
		upscale1:      "output_upscaling.0",
		upscaleLN:     layerNorm2d{"output_upscaling.1", dim / 4},
		upscale2:      "output_upscaling.3",
		iouHead:       newMLP("iou_prediction_head", dim, cfg.IoUHidden, cfg.NumMultimask+1, cfg.IoUDepth),
		graphs:        map[int]*decoderGraph{},
	}
	for i := 0; i < d.numMaskTokens; i++ {
		d.hypernets = append(d.hypernets, newMLP(fmt.Sprintf("output_hypernetworks_mlps.%d", i), dim, dim, dim/8, 3))
	}
	p := d.p
	p.load("iou_token.weight", 1, dim)
	p.load("mask_tokens.weight", d.numMaskTokens, dim)
	d.transformer.load(p)
	p.load(d.upscale1+".weight", dim, dim/4, 2, 2)
	p.load(d.upscale1+".bias", dim/4)
	d.upscaleLN.load(p)
	p.load(d.upscale2+".weight", dim/4, dim/8, 2, 2)
	p.load(d.upscale2+".bias", dim/8)
	if p.err == nil {
		// The upscaling convolutions as per-pixel matrices (see upscale).
		p.vals[d.upscale1+".weight_px"], p.vals[d.upscale1+".bias_px"] = pixelShuffleWeights(p.vals[d.upscale1+".weight"], p.vals[d.upscale1+".bias"])
		p.vals[d.upscale2+".weight_px"], p.vals[d.upscale2+".bias_px"] = pixelShuffleWeights(p.vals[d.upscale2+".weight"], p.vals[d.upscale2+".bias"])
	}
	for _, h := range d.hypernets {
		h.load(p)
	}
	d.iouHead.load(p)
	if p.err != nil {
		return nil, fmt.Errorf("sam: mask decoder: %w", p.err)
	}
	return d, nil
}

// build makes the decoder graph for n sparse prompt tokens
// (MaskDecoder.predict_masks, all mask tokens).
func (d *MaskDecoder) build(n int) (*decoderGraph, error) {
	g := nn.NewGraph()
	p := d.p
	dim, e := d.cfg.PromptDim, d.cfg.EmbedSize()
	m := d.numMaskTokens

	// tokens = cat(iou_token, mask_tokens, sparse): (1+M+n, D)
	parts := []*G.Node{p.node(g, "iou_token.weight"), p.node(g, "mask_tokens.weight")}
	if n > 0 {
		parts = append(parts, g.Input(inSparse, n, dim))
	}
	tokens := concatRows(g, parts...) // (T, D)

	// src = image_embeddings + dense prompt; pos_src = image_pe; both
	// flattened, flatten(2).permute(0, 2, 1) with batch 1 dropped, by
	// PredictMasks (flattenInputs): (1, D, E, E) -> (E*E, D).
	src := g.Input(inSrcFlat, e*e, dim)                // (E*E, D)
	pos := g.Input(inPEFlat, e*e, dim)                 // (E*E, D)
	srcPE := g.Input(inSrcPE, nn.PackedBLen(dim, e*e)) // packed (src + pos)^T

	hs, keys := d.transformer.forward(g, p, src, pos, srcPE, tokens) // (T, D), (E*E, D)
	iouTokenOut := sliceRows(g, hs, 0, 1)                            // (1, D)

	// output_upscaling on src.transpose(1, 2).view(1, D, E, E): each
	// ConvTranspose2d(k2, s2) is a per-pixel matrix product; the pixels
	// stay in the order (E*E, 2x2, 2x2) until the masks are written out.
	up := d.upscaleStage1(g, p, keys) // (E*E*4, D/4): ConvT, LayerNorm2d, GELU

	// hyper_in[i] = MLP_i(mask_tokens_out[i]): (M, D/8)
	hyper := make([]*G.Node, m)
	for i, h := range d.hypernets {
		hyper[i] = h.forward(g, p, sliceRows(g, hs, 1+i, 2+i)) // (1, D/8)
	}
	hyperIn := concatRows(g, hyper...) // (M, D/8)

	masks := d.upscaleMasks(g, p, up, hyperIn, e) // (M, 4E*4E): ConvT, GELU, hyper_in @ upscaled
	iou := d.iouHead.forward(g, p, iouTokenOut)   // (1, M)

	mach, err := g.Compile()
	if err != nil {
		return nil, fmt.Errorf("sam: mask decoder graph for %d prompt tokens: %w", n, err)
	}
	return &decoderGraph{m: mach, masks: masks, iou: iou, sparseLen: n}, nil
}

// flattenInputs returns image_embeddings + dense and image_pe flattened to
// (E*E, D), reusing the last ones when the same tensors come back. d.mu
// must be held.
func (d *MaskDecoder) flattenInputs(emb, pe, dense *tensor.Dense) (src, pos, srcPE *tensor.Dense) {
	dim, e := d.cfg.PromptDim, d.cfg.EmbedSize()
	changed := false
	if k := [2]flatKey{keyOf(emb), keyOf(dense)}; d.srcFlat == nil || d.srcKey != k {
		if d.srcFlat == nil {
			d.srcFlat = nn.NewDense(nil, e*e, dim)
		}
		transposeAdd(nn.F32(d.srcFlat), nn.F32(emb), nn.F32(dense), dim, e*e)
		d.srcKey, changed = k, true
	}
	if k := [2]flatKey{keyOf(pe)}; d.peFlat == nil || d.peKey != k {
		if d.peFlat == nil {
			d.peFlat = nn.NewDense(nil, e*e, dim)
		}
		transposeAdd(nn.F32(d.peFlat), nn.F32(pe), nil, dim, e*e)
		d.peKey, changed = k, true
	}
	// The first block's image side, the same for every prompt on an image
	// (without a mask prompt), packed once.
	if n := nn.PackedBLen(dim, e*e); d.srcPE == nil || d.srcPE.Shape().TotalSize() != n {
		d.srcPE, changed = nn.NewDense(nil, n), true
	}
	if changed {
		packKeysPEInto(nn.F32(d.srcPE), nn.F32(d.srcFlat), nn.F32(d.peFlat), e*e, dim)
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
func (d *MaskDecoder) PredictMasks(ctx context.Context, imageEmbeddings, imagePE, sparse, dense *tensor.Dense) (masks, iou *tensor.Dense, err error) {
	dim, e := d.cfg.PromptDim, d.cfg.EmbedSize()
	grid := tensor.Shape{1, dim, e, e}
	for _, c := range []struct {
		name string
		t    *tensor.Dense
	}{{inImageEmbeddings, imageEmbeddings}, {inImagePE, imagePE}, {inDense, dense}} {
		if c.t == nil {
			return nil, nil, fmt.Errorf("sam: mask decoder: %s is nil", c.name)
		}
		if !c.t.Shape().Eq(grid) || c.t.Dtype() != tensor.Float32 {
			return nil, nil, fmt.Errorf("sam: mask decoder: %s has shape %v (%v), want %v float32", c.name, c.t.Shape(), c.t.Dtype(), grid)
		}
	}
	n := 0
	var sparse2 *tensor.Dense
	if sparse != nil {
		s := sparse.Shape()
		if len(s) != 3 || s[0] != 1 || s[2] != dim || sparse.Dtype() != tensor.Float32 {
			return nil, nil, fmt.Errorf("sam: mask decoder: sparse prompt embeddings have shape %v (%v), want (1, N, %d) float32", s, sparse.Dtype(), dim)
		}
		n = s[1]
		if n > 0 {
			sparse2 = nn.NewDense(nn.F32(sparse)[:n*dim], n, dim)
		}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	dg, err := d.graph(n)
	if err != nil {
		return nil, nil, err
	}
	in := make(map[string]*tensor.Dense, len(d.p.vals)+4)
	d.p.bind(in)
	in[inSrcFlat], in[inPEFlat], in[inSrcPE] = d.flattenInputs(imageEmbeddings, imagePE, dense)
	if n > 0 {
		in[inSparse] = sparse2
	}
	if err := dg.m.Run(ctx, in); err != nil {
		return nil, nil, fmt.Errorf("sam: mask decoder: %w", err)
	}
	side := 4 * e
	mv, iv := nn.Value(dg.masks), nn.Value(dg.iou)
	if mv == nil || iv == nil {
		return nil, nil, fmt.Errorf("sam: mask decoder: graph produced no output")
	}
	masks = nn.NewDense(append([]float32(nil), nn.F32(mv)...), 1, d.numMaskTokens, side, side)
	iou = nn.NewDense(append([]float32(nil), nn.F32(iv)...), 1, d.numMaskTokens)
	return masks, iou, nil
}

// Forward is MaskDecoder.forward: it runs PredictMasks and keeps mask
// tokens 1..M-1 when multimask is set, else token 0. It returns low-res
// mask logits (1, K, 4E, 4E) and IoU predictions (1, K), K = 3 or 1.
func (d *MaskDecoder) Forward(ctx context.Context, imageEmbeddings, imagePE, sparse, dense *tensor.Dense, multimask bool) (masks, iou *tensor.Dense, err error) {
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
	k := hi - lo
	masks = nn.NewDense(append([]float32(nil), nn.F32(all)[lo*plane:hi*plane]...), 1, k, side, side)
	iou = nn.NewDense(append([]float32(nil), nn.F32(allIoU)[lo:hi]...), 1, k)
	return masks, iou, nil
}

// pixelShuffleWeights turns a ConvTranspose2d(k2, s2) weight (Cin, Cout,
// 2, 2) and bias (Cout) into the matrix of its per-pixel product: w (Cin,
// 4*Cout) with column r*Cout+co = weight[:, co, r/2, r%2], and the bias
// repeated for each of the 4 output phases r = ry*2+rx. One input pixel
// times w gives its 2x2 output pixels, phase by phase, each a row of Cout
// channels.
func pixelShuffleWeights(weight, bias *tensor.Dense) (*tensor.Dense, *tensor.Dense) {
	s := weight.Shape()
	cin, cout := s[0], s[1]
	wv, bv := nn.F32(weight), nn.F32(bias)
	w := make([]float32, cin*4*cout)
	for c := 0; c < cin; c++ {
		for co := 0; co < cout; co++ {
			for r := 0; r < 4; r++ {
				w[c*4*cout+r*cout+co] = wv[(c*cout+co)*4+r]
			}
		}
	}
	b := make([]float32, 4*cout)
	for r := 0; r < 4; r++ {
		copy(b[r*cout:], bv)
	}
	return nn.NewDense(w, cin, 4*cout), nn.NewDense(b, 4*cout)
}

// pixelLinear adds a node computing x (rows, in) @ w (in, out) + b, the
// per-pixel product of a ConvTranspose2d(k2, s2) (pixelShuffleWeights),
// viewed as (rows*4, out/4): every input pixel becomes 4 rows, one per
// output phase.
func pixelLinear(g *nn.Graph, name string, x, w, b *G.Node) *G.Node {
	if g.Err() != nil || x == nil || w == nil || b == nil {
		return nil
	}
	xs, ws := x.Shape(), w.Shape()
	if len(xs) != 2 || len(ws) != 2 || ws[0] != xs[1] || ws[1]%4 != 0 {
		return failNode(g, "%s: input %v, weight %v", name, xs, ws)
	}
	rows, in, out := xs[0], xs[1], ws[1]
	return g.ApplyFull(name, tensor.Shape{rows * 4, out / 4}, func(o *tensor.Dense, v []*tensor.Dense) error {
		dst, bias := nn.F32(o), nn.F32(v[2])
		nn.ParallelFor(rows, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				copy(dst[r*out:(r+1)*out], bias)
			}
		})
		// (rows, 4*Cout) = x (rows, Cin) @ w (Cin, 4*Cout) + bias
		nn.Gemm(false, false, rows, out, in, 1, nn.F32(v[0]), in, nn.F32(v[1]), out, 1, dst, out)
		return nil
	}, x, w, b)
}

// upscaleStage1 is output_upscaling.0-2 on the keys (E*E, D): the
// ConvTranspose2d(D, D/4, k2, s2), LayerNorm2d (over each output pixel's
// D/4 channels, one row here) and GELU -> (E*E*4, D/4), rows in the order
// (input pixel, phase).
func (d *MaskDecoder) upscaleStage1(g *nn.Graph, p *params, keys *G.Node) *G.Node {
	lnW, lnB := p.node(g, d.upscaleLN.prefix+".weight"), p.node(g, d.upscaleLN.prefix+".bias")
	if g.Err() != nil {
		return nil
	}
	x := pixelLinear(g, "UpscaleConvT1", keys, p.node(g, d.upscale1+".weight_px"), p.node(g, d.upscale1+".bias_px"))
	return g.ApplyFull("UpscaleLN2dGELU", x.Shape(), func(o *tensor.Dense, v []*tensor.Dense) error {
		s := v[0].Shape()
		layerNormRows(nn.F32(o), nn.F32(v[0]), s[0], s[1], nn.F32(v[1]), nn.F32(v[2]), 1e-6) // LayerNorm2d
		nn.GELUSlice(nn.F32(o), nn.F32(o))
		return nil
	}, x, lnW, lnB)
}

// upscaleMasks is output_upscaling.3-4, ConvTranspose2d(D/4, D/8, k2, s2)
// and GELU on x (E*E*4, D/4), followed by the mask product (hyper_in @
// upscaled.view(b, c, h*w)).view(b, -1, h, w) with hyper (M, D/8): the
// masks (M, 4E*4E). It runs by blocks of pixels, so the upscaled
// embedding (E*E*16, D/8) is never stored whole. Its rows are in upscale
// order: pixel (y, x) of the E x E grid, phase (ry1, rx1) of the first
// convolution, phase (ry2, rx2) of this one, written out at row
// 4y+2ry1+ry2, column 4x+2rx1+rx2 of each mask.
func (d *MaskDecoder) upscaleMasks(g *nn.Graph, p *params, x, hyper *G.Node, e int) *G.Node {
	w, b := p.node(g, d.upscale2+".weight_px"), p.node(g, d.upscale2+".bias_px")
	if g.Err() != nil || x == nil || hyper == nil || w == nil || b == nil {
		return nil
	}
	xs, ws, hs := x.Shape(), w.Shape(), hyper.Shape()
	if len(xs) != 2 || len(ws) != 2 || len(hs) != 2 || ws[0] != xs[1] || ws[1] != 4*hs[1] || xs[0] != 4*e*e {
		return failNode(g, "upscale masks: input %v, weight %v, hyper_in %v", xs, ws, hs)
	}
	rows, cin, c, m := xs[0], xs[1], hs[1], hs[0]
	side := 4 * e
	const block = 64 // rows of x per task: 256 upscaled pixels
	var wPack nn.PackCache
	return g.ApplyFull("UpscaleMasks", tensor.Shape{m, side * side}, func(o *tensor.Dense, v []*tensor.Dense) error {
		xv, hv, bv, out := nn.F32(v[0]), nn.F32(v[1]), nn.F32(v[3]), nn.F32(o)
		pw := wPack.B(false, cin, 4*c, nn.F32(v[2]), 4*c)
		nn.ParallelFor((rows+block-1)/block, func(lo, hi int) {
			up := nn.Buffer(block * 4 * c)
			defer nn.Recycle(up)
			prod := nn.Buffer(m * block * 4)
			defer nn.Recycle(prod)
			for t := lo; t < hi; t++ {
				r0 := t * block
				nr := min(block, rows-r0)
				// up (nr, 4C) = GELU(x[r0:r0+nr] @ w + b), viewed as (4 nr, C)
				for r := 0; r < nr; r++ {
					copy(up[r*4*c:(r+1)*4*c], bv)
				}
				nn.GemmPacked(false, nr, 1, xv[r0*cin:], cin, pw, 1, up, 4*c)
				nn.GELUBias(up[:nr*4*c], nil)
				// prod (M, 4 nr) = hyper (M, C) @ up^T
				n := 4 * nr
				nn.Gemm(false, true, m, n, c, 1, hv, c, up, c, 0, prod, n)
				for j := 0; j < n; j++ {
					gi := 4*r0 + j // upscaled row: pixel gi/16, phases gi%16
					px, q := gi/16, gi%16
					y, xx := px/e, px%e
					ry1, rx1, ry2, rx2 := q>>3, (q>>2)&1, (q>>1)&1, q&1
					at := (4*y+2*ry1+ry2)*side + 4*xx + 2*rx1 + rx2
					for k := 0; k < m; k++ {
						out[k*side*side+at] = prod[k*n+j]
					}
				}
			}
		})
		return nil
	}, x, hyper, w, b)
}
