package gdino

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/mam-go/mam-go/nn"
)

// transformer is the part of transformer.py Transformer around the
// encoder: the flattening of the feature levels (with level_embed), the
// two-stage query selection (enc_output, enc_output_norm,
// enc_out_class_embed, enc_out_bbox_embed), the content queries tgt_embed,
// the decoder and, from groundingdino.py, the per-layer heads.
//
// The work splits in three steps, because the query selection picks rows by
// value:
//
//  1. flatten (graph): the levels and their position embeddings as token
//     rows, the encoder's input;
//  2. selectQueries (plain Go, after the encoder graph has run): proposals,
//     scores over the text, the top NumQueries, their reference boxes;
//  3. decode (graph): the decoder from those references and the heads.
//
// selectRefs wraps step 2 as an op for callers that want one graph.
type transformer struct {
	cfg           Config
	levelEmbed    []float32 // (levels, d)
	encOutput     nn.Linear
	encOutputNorm nn.LayerNorm
	encOutBBox    *mlp      // 3 layers, d -> d -> d -> 4
	tgtEmbed      []float32 // (NumQueries, d)
	decoder       *transformerDecoder
	heads         *detectionHeads
}

// newTransformer fetches the transformer's parameters from the model's root
// parameters p (names as in the checkpoint once "module." is stripped):
// transformer.level_embed, transformer.enc_output(_norm),
// transformer.enc_out_bbox_embed, transformer.tgt_embed, transformer.decoder
// and the heads' bbox_embed. transformer.encoder is not read here.
func newTransformer(p *nn.Params, cfg Config) *transformer {
	d := cfg.HiddenDim
	tp := p.Sub("transformer")
	return &transformer{
		cfg:           cfg,
		levelEmbed:    tp.Floats("level_embed", cfg.NumLevels, d),
		encOutput:     nn.NewLinear(tp.Sub("enc_output"), d, d),
		encOutputNorm: nn.NewLayerNorm(tp.Sub("enc_output_norm"), d, lnEps),
		encOutBBox:    newMLP(tp.Sub("enc_out_bbox_embed"), d, d, 4, 3),
		tgtEmbed:      tp.Floats("tgt_embed.weight", cfg.NumQueries, d),
		decoder:       newTransformerDecoder(tp.Sub("decoder"), cfg),
		heads:         newDetectionHeads(p, cfg),
	}
}

// levelShapes returns the (H, W) of each level (1, d, H, W).
func levelShapes(srcs []*nn.Node) [][2]int {
	shapes := make([][2]int, len(srcs))
	for i, s := range srcs {
		if sh := nn.Shape(s); len(sh) == 4 {
			shapes[i] = [2]int{sh[2], sh[3]}
		}
	}
	return shapes
}

// levelStarts is level_start_index: the first token row of each level.
func levelStarts(shapes [][2]int) []int {
	starts := make([]int, len(shapes))
	s := 0
	for i, hw := range shapes {
		starts[i] = s
		s += hw[0] * hw[1]
	}
	return starts
}

// flatten is the start of Transformer.forward: the levels srcs (1, d, H,
// W), l = 0..levels-1, become token rows, level after level, each level's
// pixels row-major: src (S, d); their position embeddings pos (1, d, H, W)
// likewise with level_embed[l] added: lvlPos (S, d). starts is
// level_start_index; levelShapes(srcs) gives spatial_shapes. Without
// padding (batch 1) every mask is false and every valid ratio is 1.
func (t *transformer) flatten(g *nn.Graph, srcs, pos []*nn.Node) (src, lvlPos *nn.Node, starts []int) {
	d := t.cfg.HiddenDim
	if g.Err() != nil {
		return nil, nil, nil
	}
	if len(srcs) == 0 || len(srcs) != len(pos) || len(srcs) > t.cfg.NumLevels {
		g.Errorf("gdino: transformer: %d levels and %d position embeddings (at most %d)", len(srcs), len(pos), t.cfg.NumLevels)
		return nil, nil, nil
	}
	shapes := levelShapes(srcs)
	for l := range srcs {
		ss, ps := nn.Shape(srcs[l]), nn.Shape(pos[l])
		if len(ss) != 4 || ss[0] != 1 || ss[1] != d || !slices.Equal(ss, ps) {
			g.Errorf("gdino: transformer: level %d has shape %v and position embedding %v, want (1, %d, H, W)", l, ss, ps, d)
			return nil, nil, nil
		}
	}
	starts = levelStarts(shapes)
	total := starts[len(starts)-1] + shapes[len(shapes)-1][0]*shapes[len(shapes)-1][1]
	// (1, d, H, W) per level -> (S, d)
	src = g.OpFull("flatten", []int{total, d}, func(out []float32, in [][]float32) error {
		flattenLevels(out, in, shapes, starts, d, nil)
		return nil
	}, srcs...)
	embed := t.levelEmbed
	lvlPos = g.OpFull("lvl_pos_embed_flatten", []int{total, d}, func(out []float32, in [][]float32) error {
		flattenLevels(out, in, shapes, starts, d, embed)
		return nil
	}, pos...)
	return src, lvlPos, starts
}

// flattenLevels writes each level in[l] (d, H*W) transposed to the rows
// starts[l].. of out (S, d), adding embed[l] (a row of d) when embed is not
// nil.
func flattenLevels(out []float32, in [][]float32, shapes [][2]int, starts []int, d int, embed []float32) {
	for l, x := range in {
		hw := shapes[l][0] * shapes[l][1]
		dst := out[starts[l]*d : (starts[l]+hw)*d]
		nn.PermuteInto(dst, x[:d*hw], []int{d, hw}, []int{1, 0})
		if embed == nil {
			continue
		}
		e := embed[l*d : (l+1)*d]
		nn.ParallelFor(hw, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				row := dst[r*d : (r+1)*d]
				for c, v := range e {
					row[c] += v
				}
			}
		})
	}
}

// querySelection is the result of the two-stage query selection.
type querySelection struct {
	// Indices are topk_proposals: the selected token rows, by decreasing
	// score (ties: lower row first).
	Indices []int
	// RefUnsig is refpoint_unsigmoid (k, 4): the decoder's initial
	// references (cx, cy, w, h), unsigmoided.
	RefUnsig []float32
}

// proposalsInto is gen_encoder_output_proposals' proposals for levels of
// the given (H, W) without padding: for token (i, j) of level l, (cx, cy, w,
// h) = ((j+0.5)/W, (i+0.5)/H, 0.05*2^l, 0.05*2^l), valid when all four are
// strictly inside (0.01, 0.99) in float32. dst (S, 4) gets log(p/(1-p)),
// +inf at invalid tokens; valid[r] reports token r's validity.
func proposalsInto(dst []float32, valid []bool, shapes [][2]int) {
	inf := float32(math.Inf(1))
	lo, hi := float32(0.01), float32(0.99)
	in := func(v float32) bool { return v > lo && v < hi }
	r := 0
	for l, hw := range shapes {
		h, w := hw[0], hw[1]
		wh := float32(0.05) * float32(math.Ldexp(1, l))
		for i := 0; i < h; i++ {
			cy := (float32(i) + 0.5) / float32(h)
			for j := 0; j < w; j++ {
				cx := (float32(j) + 0.5) / float32(w)
				p := [4]float32{cx, cy, wh, wh}
				ok := in(cx) && in(cy) && in(wh)
				valid[r] = ok
				for c, v := range p {
					if ok {
						dst[r*4+c] = logit32(v)
					} else {
						dst[r*4+c] = inf
					}
				}
				r++
			}
		}
	}
}

// topkRows returns the k rows of the largest scores, in decreasing order
// of score. NaN ranks above every number, as in torch.topk; equal scores
// rank the lower row first (torch.topk on CPU leaves their order to
// std::partial_sort / std::nth_element, i.e. unspecified).
func topkRows(scores []float32, k int) []int {
	idx := byDecreasingScore(scores)
	return idx[:min(k, len(idx))]
}

// byDecreasingScore returns the indices of scores ordered by decreasing
// score: NaN first (as torch's sort and topk put it), equal scores (and
// NaNs among themselves) in index order.
func byDecreasingScore(scores []float32) []int {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		x, y := scores[a], scores[b]
		xn, yn := x != x, y != y
		switch {
		case xn && yn:
			return 0
		case xn:
			return -1
		case yn:
			return 1
		}
		return cmp.Compare(y, x)
	})
	return idx
}

// selectQueries is the two-stage query selection of Transformer.forward
// ("standard"), in plain Go on the encoder's outputs memory (S, d) and
// memoryText (n, d), levels of the given shapes:
//
//   - proposals and their validity (proposalsInto); memory zeroed at the
//     invalid tokens;
//   - output_memory = enc_output_norm(enc_output(memory)) (S, d);
//   - scores = max over the n text tokens of output_memory memoryText^T;
//   - the k = min(NumQueries, S) rows of the highest scores (topkRows);
//   - refpoint_unsigmoid = enc_out_bbox_embed(output_memory) + proposals at
//     those rows (the MLP is only run on them).
//
// When S < NumQueries (a very small image) the official code fails in
// torch.topk; here the decoder then runs k queries (tgt_embed's first k).
// dump, when not nil, receives the golden intermediates (output_proposals,
// output_memory, enc_outputs_class, topk_logits, topk_proposals,
// enc_outputs_coord_unselected, refpoint_unsigmoid, init_box_proposal,
// tgt), which costs the full-size MLP and class tensors.
func (t *transformer) selectQueries(ctx context.Context, memory, memoryText []float32, shapes [][2]int, dump DumpFunc) (*querySelection, error) {
	d := t.cfg.HiddenDim
	s := 0
	for _, hw := range shapes {
		s += hw[0] * hw[1]
	}
	switch {
	case s == 0:
		return nil, fmt.Errorf("gdino: query selection: no image tokens")
	case len(memory) != s*d:
		return nil, fmt.Errorf("gdino: query selection: memory of %d values for %d tokens of %d", len(memory), s, d)
	case len(memoryText)%d != 0 || len(memoryText) == 0:
		return nil, fmt.Errorf("gdino: query selection: text memory of %d values (%d per token)", len(memoryText), d)
	}
	n := len(memoryText) / d
	if n > t.cfg.MaxTextLen {
		return nil, fmt.Errorf("gdino: query selection: %d text tokens, at most %d", n, t.cfg.MaxTextLen)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// proposals (S, 4), memory zeroed where invalid
	proposals := make([]float32, s*4)
	valid := make([]bool, s)
	proposalsInto(proposals, valid, shapes)
	outMem := nn.Scratch(s * d) // overwritten below
	defer nn.Recycle(outMem)
	copy(outMem, memory)
	for r, ok := range valid {
		if !ok {
			clear(outMem[r*d : (r+1)*d])
		}
	}
	// output_memory (S, d) = LN(enc_output(memory))
	tmp := nn.Scratch(s * d)
	applyLinear(t.encOutput, tmp, outMem, s)
	applyLayerNorm(t.encOutputNorm, outMem, tmp, s)
	nn.Recycle(tmp)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// scores (S) = max over tokens of output_memory memoryText^T (S, n)
	logits := nn.Scratch(s * n)
	defer nn.Recycle(logits)
	nn.Gemm(false, true, s, n, d, 1, outMem, d, memoryText, d, 0, logits, n)
	scores := make([]float32, s)
	for r := range scores {
		scores[r] = maxRow(logits[r*n : (r+1)*n])
	}
	// top k rows, decreasing
	k := min(t.cfg.NumQueries, s)
	idx := topkRows(scores, k)
	// refpoint_unsigmoid (k, 4) = enc_out_bbox_embed(output_memory[idx]) + proposals[idx]
	sel := make([]float32, k*d)
	for i, r := range idx {
		copy(sel[i*d:(i+1)*d], outMem[r*d:(r+1)*d])
	}
	ref := make([]float32, k*4)
	t.encOutBBox.apply(ref, sel, k)
	for i, r := range idx {
		for c := 0; c < 4; c++ {
			ref[i*4+c] += proposals[r*4+c]
		}
	}
	if dump != nil {
		t.dumpSelection(dump, outMem, logits, scores, proposals, idx, ref, s, n)
	}
	return &querySelection{Indices: idx, RefUnsig: ref}, nil
}

// maxRow is the largest value of row (NaN if one is NaN, as torch.max).
func maxRow(row []float32) float32 {
	m := float32(math.Inf(-1))
	for _, v := range row {
		if v != v {
			return v
		}
		m = max(m, v)
	}
	return m
}

// dumpSelection sends the query selection's intermediates under their
// golden names, with the batch axis of the reference.
func (t *transformer) dumpSelection(dump DumpFunc, outMem, logits, scores, proposals []float32, idx []int, ref []float32, s, n int) {
	d, maxLen, k := t.cfg.HiddenDim, t.cfg.MaxTextLen, len(idx)
	dump("output_proposals", []int{1, s, 4}, proposals)
	dump("output_memory", []int{1, s, d}, outMem)
	class := make([]float32, s*maxLen)
	ninf := float32(math.Inf(-1))
	for r := 0; r < s; r++ {
		row := class[r*maxLen : (r+1)*maxLen]
		copy(row, logits[r*n:(r+1)*n])
		for j := n; j < maxLen; j++ {
			row[j] = ninf
		}
	}
	dump("enc_outputs_class", []int{1, s, maxLen}, class)
	dump("topk_logits", []int{1, s}, scores)
	fi := make([]float32, k)
	for i, r := range idx {
		fi[i] = float32(r)
	}
	dump("topk_proposals", []int{1, k}, fi)
	coord := make([]float32, s*4)
	t.encOutBBox.apply(coord, outMem, s)
	for i := range coord {
		coord[i] += proposals[i]
	}
	dump("enc_outputs_coord_unselected", []int{1, s, 4}, coord)
	dump("refpoint_unsigmoid", []int{1, k, 4}, ref)
	init := make([]float32, k*4)
	for i, r := range idx {
		for c := 0; c < 4; c++ {
			init[i*4+c] = sigmoid32(proposals[r*4+c])
		}
	}
	dump("init_box_proposal", []int{1, k, 4}, init)
	dump("tgt", []int{1, k, d}, t.tgtEmbed[:k*d])
}

// selectRefs is selectQueries as an op, for a caller that runs the encoder
// and the decoder as one graph: memory (S, d) and memoryText (n, d) ->
// refpoint_unsigmoid (k, 4), k = min(NumQueries, S).
func (t *transformer) selectRefs(g *nn.Graph, memory, memoryText *nn.Node, shapes [][2]int) *nn.Node {
	s := 0
	for _, hw := range shapes {
		s += hw[0] * hw[1]
	}
	k := min(t.cfg.NumQueries, s)
	return g.OpFull("query_selection", []int{k, 4}, func(out []float32, in [][]float32) error {
		sel, err := t.selectQueries(context.Background(), in[0], in[1], shapes, nil)
		if err != nil {
			return err
		}
		copy(out, sel.RefUnsig)
		return nil
	}, memory, memoryText)
}

// decoded is what decode returns: the final heads and, when kept, every
// layer's intermediates for dumps.
type decoded struct {
	// Logits (k, MaxTextLen): pred_logits, -inf past the n text tokens.
	Logits *nn.Node
	// Boxes (k, 4): pred_boxes, (cx, cy, w, h) normalised to the image.
	Boxes *nn.Node

	layers []decoderLayerNodes
	tgt    *nn.Node
	last   *nn.Node // the reference after the last layer (dec_ref<L>), when kept
}

// decode builds the decoder and the heads (TransformerDecoder, then
// groundingdino.py's per-layer heads) on memory (S, d), memoryText (n, d)
// and the selected references refUnsig (k, 4) (querySelection.RefUnsig),
// for levels of the given shapes and starts. The content queries are
// tgt_embed's first k rows. With keep, every layer's intermediates are
// kept and its heads computed, for dumps (see dump); otherwise only the
// last layer's heads are.
func (t *transformer) decode(g *nn.Graph, memory, memoryText, refUnsig *nn.Node, shapes [][2]int, starts []int, keep bool) *decoded {
	d := t.cfg.HiddenDim
	if g.Err() != nil {
		return &decoded{}
	}
	rs := nn.Shape(refUnsig)
	if len(rs) != 2 || rs[1] != 4 || rs[0] < 1 || rs[0] > t.cfg.NumQueries {
		g.Errorf("gdino: decoder: references of shape %v, want (k, 4) with k <= %d", rs, t.cfg.NumQueries)
		return &decoded{}
	}
	k := rs[0]
	tgt := g.Param(fmt.Sprintf("transformer.tgt_embed.weight[:%d]", k), t.tgtEmbed[:k*d], k, d)
	layers, last := t.decoder.forward(g, tgt, memory, memoryText, refUnsig, shapes, starts, keep)
	if len(layers) == 0 {
		g.Errorf("gdino: decoder: no layers")
		return &decoded{}
	}
	out := &decoded{layers: layers, tgt: tgt, last: last}
	for l := range layers {
		if !keep && l < len(layers)-1 {
			continue
		}
		ln := &layers[l]
		ln.Logits, ln.Boxes = t.heads.forward(g, l, ln.HS, ln.Ref, memoryText)
		if keep {
			g.Keep(ln.Logits)
			g.Keep(ln.Boxes)
		}
	}
	out.Logits, out.Boxes = layers[len(layers)-1].Logits, layers[len(layers)-1].Boxes
	return out
}

// dump sends the decoder's kept intermediates under their golden names
// (dec_ref<i>, dec<i>_query_sine_embed, ..., dec<i>_logits, pred_logits,
// pred_boxes) with the reference's batch axis, after a run.
func (o *decoded) dump(fn DumpFunc) {
	send := func(name string, n *nn.Node) {
		if n == nil {
			return
		}
		if v := nn.Values(n); v != nil {
			fn(name, append([]int{1}, nn.Shape(n)...), v)
		}
	}
	for i, l := range o.layers {
		send(fmt.Sprintf("dec_ref%d", i), l.Ref)
		send(fmt.Sprintf("dec%d_query_sine_embed", i), l.SineEmbed)
		send(fmt.Sprintf("dec%d_query_pos", i), l.QueryPos)
		send(fmt.Sprintf("dec%d_after_sa", i), l.AfterSA)
		send(fmt.Sprintf("dec%d_after_ca_text", i), l.AfterCAText)
		send(fmt.Sprintf("dec%d_after_ca_img", i), l.AfterCAImg)
		send(fmt.Sprintf("dec%d_out", i), l.Out)
		send(fmt.Sprintf("dec%d_hs", i), l.HS)
		send(fmt.Sprintf("dec%d_logits", i), l.Logits)
		send(fmt.Sprintf("dec%d_boxes", i), l.Boxes)
	}
	send(fmt.Sprintf("dec_ref%d", len(o.layers)), o.last)
	send("pred_logits", o.Logits)
	send("pred_boxes", o.Boxes)
}
