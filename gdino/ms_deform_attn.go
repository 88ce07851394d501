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
	return m.forwardDump(g, query, value, ref, shapes, starts, nil, "")
}

// forwardDump is forward that, with dump not nil, also keeps the internals
// under prefix+"_value" (value_proj's output, (S, dim)),
// "_sampling_locations" (Nq, heads, levels, points, 2),
// "_attention_weights" (Nq, heads, levels, points, after the softmax) and
// "_core" (Nq, dim, before output_proj): the golden files'
// enc0_deform_* and dec0_deform_*.
func (m *msDeformAttn) forwardDump(g *nn.Graph, query, value, ref *nn.Node, shapes [][2]int, starts []int, dump map[string]*nn.Node, prefix string) *nn.Node {
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
	v := m.valueProj.Forward(g, value)                                   // (S, dim)
	off := m.samplingOffsets.Forward(g, query)                           // (Nq, heads*levels*points*2)
	loc := samplingLocations(g, off, ref, shapes, m.heads, m.points)     // (Nq, heads, levels, points, 2)
	w := m.softmaxWeights(g, m.attentionWeights.Forward(g, query))       // (Nq, heads, levels, points)
	core := g.MSDeformAttn(v, loc, w, shapes, starts, m.heads, m.points) // (Nq, dim)
	out := m.outputProj.Forward(g, core)                                 // (Nq, dim)
	if dump != nil {
		for name, n := range map[string]*nn.Node{"_value": v, "_sampling_locations": loc, "_attention_weights": w, "_core": core} {
			if n != nil {
				dump[prefix+name] = g.Keep(n)
			}
		}
	}
	return out
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
		nn.ParallelFor(nq, func(q0, q1 int) {
			for q := q0; q < q1; q++ {
				for h := 0; h < heads; h++ {
					for l, sh := range shapes {
						rq := r[(q*levels+l)*rd : (q*levels+l+1)*rd]
						for p := 0; p < points; p++ {
							i := 2 * (((q*heads+h)*levels+l)*points + p)
							ox, oy := o[i], o[i+1]
							if rd == 2 {
								out[i] = rq[0] + ox/float32(sh[1])
								out[i+1] = rq[1] + oy/float32(sh[0])
							} else {
								out[i] = rq[0] + ox/float32(points)*rq[2]*0.5
								out[i+1] = rq[1] + oy/float32(points)*rq[3]*0.5
							}
						}
					}
				}
			}
		})
		return nil
	}, off, ref)
}
