package gdino

import "github.com/mam-go/mam-go/nn"

// Multi-scale deformable attention (ms_deform_attn.py
// MultiScaleDeformableAttention, batch_first): each query samples every
// level at a few points around its reference, with offsets and weights
// predicted from the query. The encoder's layers use 2-d reference points,
// the decoder's cross-attention 4-d reference boxes.

// msDeformAttn is MultiScaleDeformableAttention: value_proj,
// sampling_offsets, attention_weights and output_proj around the sampling
// core (nn.MSDeformAttn).
type msDeformAttn struct {
	valueProj, samplingOffsets, attentionWeights, outputProj nn.Linear
	dim, heads, levels, points                               int
}

// newMSDeformAttn fetches the module's four linears from p (the module's
// prefix, e.g. "transformer.encoder.layers.0.self_attn").
func newMSDeformAttn(p *nn.Params, dim, heads, levels, points int) *msDeformAttn {
	return &msDeformAttn{
		valueProj:        nn.NewLinear(p.Sub("value_proj"), dim, dim),
		samplingOffsets:  nn.NewLinear(p.Sub("sampling_offsets"), dim, heads*levels*points*2),
		attentionWeights: nn.NewLinear(p.Sub("attention_weights"), dim, heads*levels*points),
		outputProj:       nn.NewLinear(p.Sub("output_proj"), dim, dim),
		dim:              dim, heads: heads, levels: levels, points: points,
	}
}

// forward attends from query (Nq, dim) (the position embedding already
// added) over value (S, dim), the levels' flattened maps: shapes[l] =
// (H_l, W_l), starting at row starts[l]. ref is (Nq, levels, 2), reference
// points (x, y) in [0, 1] units, or (Nq, levels, 4), reference boxes (cx,
// cy, w, h). The result is (Nq, dim).
//
// No value position is padding at batch 1, so key_padding_mask is not
// taken.
func (m *msDeformAttn) forward(g *nn.Graph, query, value, ref *nn.Node, shapes [][2]int, starts []int) *nn.Node {
	return m.forwardDump(g, query, value, ref, shapes, starts, nil, "", nil)
}

// forwardDump is forward that, with dump not nil, also keeps the internals
// under prefix+"_value" (value_proj's output, (S, dim)),
// "_sampling_locations" (Nq, heads, levels, points, 2),
// "_attention_weights" (Nq, heads, levels, points, after the softmax) and
// "_core" (Nq, dim, before output_proj): the golden files'
// enc0_deform_* and dec0_deform_*. With res not nil it returns res plus
// the attention, the residual summed with output_proj's bias before the
// product (Graph.LinearResidual).
func (m *msDeformAttn) forwardDump(g *nn.Graph, query, value, ref *nn.Node, shapes [][2]int, starts []int, dump map[string]*nn.Node, prefix string, res *nn.Node) *nn.Node {
	if g.Err() != nil {
		return nil
	}
	if len(shapes) != m.levels || len(starts) != m.levels {
		return g.Errorf("gdino: ms deform attn: %d level shapes and %d starts for %d levels", len(shapes), len(starts), m.levels)
	}
	qs, rs := nn.Shape(query), nn.Shape(ref)
	if len(qs) != 2 || qs[1] != m.dim || len(rs) != 3 || rs[0] != qs[0] || rs[1] != m.levels || (rs[2] != 2 && rs[2] != 4) {
		return g.Errorf("gdino: ms deform attn: query %v and reference %v (want (Nq, %d) and (Nq, %d, 2 or 4))", qs, rs, m.dim, m.levels)
	}
	off := m.samplingOffsets.Forward(g, query)                       // (Nq, heads*levels*points*2)
	loc := samplingLocations(g, off, ref, shapes, m.heads, m.points) // (Nq, heads, levels, points, 2)
	w := m.softmaxWeights(g, m.attentionWeights.Forward(g, query))   // (Nq, heads, levels, points)
	var v, core *nn.Node
	if vs := nn.Shape(value); dump == nil && len(vs) == 2 && m.projectAfter(qs[0], vs[0]) {
		core = m.coreProjected(g, value, loc, w, shapes, starts) // (Nq, dim)
	} else {
		v = m.valueProj.Forward(g, value)                                   // (S, dim)
		core = g.MSDeformAttn(v, loc, w, shapes, starts, m.heads, m.points) // (Nq, dim)
	}
	var out *nn.Node // (Nq, dim)
	if res != nil {
		out = m.outputProj.ForwardResidual(g, core, res)
	} else {
		out = m.outputProj.Forward(g, core)
	}
	if dump != nil {
		for name, n := range map[string]*nn.Node{"_value": v, "_sampling_locations": loc, "_attention_weights": w, "_core": core} {
			if n != nil {
				dump[prefix+name] = g.Keep(n)
			}
		}
	}
	return out
}

// projectAfter reports whether nq queries over a value of s rows should
// sample the unprojected value and project their sums (coreProjected):
// when that is under half the multiply-adds of projecting all s rows (the
// decoder's 900 queries over the image memory, not the encoder's
// self-attention).
func (m *msDeformAttn) projectAfter(nq, s int) bool {
	hd := m.dim / m.heads
	return 2*nq*m.heads*(4*m.levels*m.points+hd) < s*m.dim
}

// coreProjected is the sampling core over value_proj(value) without
// forming the projected value (nn.MSDeformAttnProjInto): the same sums up
// to the float32 rounding order.
func (m *msDeformAttn) coreProjected(g *nn.Graph, value, loc, w *nn.Node, shapes [][2]int, starts []int) *nn.Node {
	if loc == nil || w == nil {
		return nil
	}
	vs := nn.Shape(value)
	nq := nn.Shape(loc)[0]
	shapes = append([][2]int(nil), shapes...)
	starts = append([]int(nil), starts...)
	hd := m.dim / m.heads
	return g.OpFull("MSDeformAttnProj", []int{nq, m.dim}, func(out []float32, in [][]float32) error {
		return nn.MSDeformAttnProjInto(out, in[0], vs[1], in[3], in[4], shapes, starts, m.heads, hd, in[1], in[2], nq, m.points)
	}, value, loc, w, m.valueProj.Weight.Node(g), m.valueProj.Bias.Node(g))
}

// softmaxWeights is attention_weights' softmax over the levels*points
// entries of each head: (Nq, heads*levels*points) -> (Nq, heads, levels,
// points).
func (m *msDeformAttn) softmaxWeights(g *nn.Graph, w *nn.Node) *nn.Node {
	if w == nil {
		return nil
	}
	nq := nn.Shape(w)[0]
	lp := m.levels * m.points
	return g.OpFull("deform.softmax", []int{nq, m.heads, m.levels, m.points}, func(out []float32, in [][]float32) error {
		copy(out, in[0])
		nn.SoftmaxRows(out, lp, 1)
		return nil
	}, w)
}

// samplingLocations turns the predicted offsets off (Nq, heads*levels*
// points*2, (x, y) last) into sampling locations around the references ref
// (Nq, levels, 2 or 4): ref + off / (W_l, H_l) for points, ref_xy + off /
// points * ref_wh * 0.5 for boxes, in the reference's float32 order.
func samplingLocations(g *nn.Graph, off, ref *nn.Node, shapes [][2]int, heads, points int) *nn.Node {
	if off == nil || ref == nil {
		return nil
	}
	rs := nn.Shape(ref)
	nq, levels, rd := rs[0], rs[1], rs[2]
	shapes = append([][2]int(nil), shapes...)
	return g.OpFull("deform.locations", []int{nq, heads, levels, points, 2}, func(out []float32, in [][]float32) error {
		o, r := in[0], in[1]
		lp2 := levels * points * 2
		nn.ParallelFor(nq, func(q0, q1 int) {
			for q := q0; q < q1; q++ {
				rq := r[q*levels*rd : (q+1)*levels*rd]
				for h := 0; h < heads; h++ {
					i := (q*heads + h) * lp2
					oh, dh := o[i:i+lp2], out[i:i+lp2]
					for l, sh := range shapes {
						ol, dl := oh[l*points*2:(l+1)*points*2], dh[l*points*2:(l+1)*points*2]
						dl = dl[:len(ol)]
						rl := rq[l*rd : (l+1)*rd]
						if rd == 2 {
							rx, ry, w, hh := rl[0], rl[1], float32(sh[1]), float32(sh[0])
							for p := 0; p+1 < len(ol); p += 2 {
								dl[p] = rx + ol[p]/w
								dl[p+1] = ry + ol[p+1]/hh
							}
							continue
						}
						rl = rl[:4]
						for p := 0; p+1 < len(ol); p += 2 {
							dl[p] = rl[0] + ol[p]/float32(points)*rl[2]*0.5
							dl[p+1] = rl[1] + ol[p+1]/float32(points)*rl[3]*0.5
						}
					}
				}
			}
		})
		return nil
	}, off, ref)
}
