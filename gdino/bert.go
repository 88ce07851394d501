package gdino

import (
	"fmt"
	"strconv"

	"github.com/mam-go/mam-go/nn"
)

// The BERT text encoder, as transformers' BertModel (models/bert/
// modeling_bert.py) computes it at inference: embeddings (word + token type
// + position, LayerNorm), then post-LayerNorm encoder layers of masked
// self-attention and an exact-GELU feed-forward. The pooler is not built:
// GroundingDINO never reads it.

// bertParam is a tensor of the checkpoint fetched by a constructor and
// declared as a graph parameter (bound once, not copied) by forward.
type bertParam struct {
	name  string // full state-dict name, the parameter's name in the graph
	data  []float32
	shape []int
}

func newBertParam(p *nn.Params, name string, shape ...int) bertParam {
	return bertParam{name: p.Prefix() + name, data: p.Floats(name, shape...), shape: shape}
}

func (t bertParam) node(g *nn.Graph) *nn.Node { return g.Param(t.name, t.data, t.shape...) }

// bertLinear is an nn.Linear(in, out) with bias.
type bertLinear struct{ w, b bertParam }

func newBertLinear(p *nn.Params, in, out int) bertLinear {
	return bertLinear{w: newBertParam(p, "weight", out, in), b: newBertParam(p, "bias", out)}
}

// bertLayerNorm is an nn.LayerNorm(dim, eps).
type bertLayerNorm struct {
	w, b bertParam
	eps  float32
}

func newBertLayerNorm(p *nn.Params, dim int, eps float64) bertLayerNorm {
	return bertLayerNorm{w: newBertParam(p, "weight", dim), b: newBertParam(p, "bias", dim), eps: float32(eps)}
}

func (l bertLayerNorm) forward(g *nn.Graph, x *nn.Node) *nn.Node {
	return g.LayerNorm(x, l.w.node(g), l.b.node(g), l.eps)
}

// bertEmbeddings is BertEmbeddings: three lookup tables and a LayerNorm.
type bertEmbeddings struct {
	word, position, tokenType bertParam // (vocab, H), (positions, H), (types, H)
	norm                      bertLayerNorm
	vocab, positions, hidden  int
}

func newBertEmbeddings(p *nn.Params, cfg Config) *bertEmbeddings {
	h := cfg.BertHidden
	return &bertEmbeddings{
		word:      newBertParam(p, "word_embeddings.weight", cfg.BertVocab, h),
		position:  newBertParam(p, "position_embeddings.weight", cfg.BertMaxPositions, h),
		tokenType: newBertParam(p, "token_type_embeddings.weight", cfg.BertTypeVocab, h),
		norm:      newBertLayerNorm(p.Sub("LayerNorm"), h, cfg.BertEps),
		vocab:     cfg.BertVocab, positions: cfg.BertMaxPositions, hidden: h,
	}
}

// forward looks up the n tokens ids at positionIDs (token type 0 for all,
// as GroundingDINO's tokenizer output has) and normalises: (n, H).
func (e *bertEmbeddings) forward(g *nn.Graph, ids, positionIDs []int) *nn.Node {
	n, h := len(ids), e.hidden
	if n == 0 {
		return g.Errorf("gdino: bert: embeddings: no tokens")
	}
	if len(positionIDs) != n {
		return g.Errorf("gdino: bert: embeddings: %d position ids for %d tokens", len(positionIDs), n)
	}
	for i, id := range ids {
		if id < 0 || id >= e.vocab {
			return g.Errorf("gdino: bert: embeddings: token %d: id %d outside the vocabulary of %d", i, id, e.vocab)
		}
		if p := positionIDs[i]; p < 0 || p >= e.positions {
			return g.Errorf("gdino: bert: embeddings: token %d: position id %d outside [0, %d)", i, p, e.positions)
		}
	}
	ids, positionIDs = append([]int(nil), ids...), append([]int(nil), positionIDs...)
	// (n, H) = word[id] + token_type[0] + position[position_id], in the
	// reference's order of additions.
	sum := g.OpFull("bert.embeddings", []int{n, h}, func(out []float32, in [][]float32) error {
		word, pos, typ := in[0], in[1], in[2][:h]
		for i, id := range ids {
			o := out[i*h : (i+1)*h]
			w, p := word[id*h:(id+1)*h], pos[positionIDs[i]*h:(positionIDs[i]+1)*h]
			for j := range o {
				o[j] = w[j] + typ[j] + p[j]
			}
		}
		return nil
	}, e.word.node(g), e.position.node(g), e.tokenType.node(g))
	return e.norm.forward(g, sum) // (n, H)
}

// bertLayer is BertLayer: BertAttention (self-attention, dense, residual,
// LayerNorm), then BertIntermediate and BertOutput (GELU feed-forward,
// residual, LayerNorm).
type bertLayer struct {
	query, key, value, attnOut bertLinear
	attnNorm                   bertLayerNorm
	intermediate, output       bertLinear
	outNorm                    bertLayerNorm
	heads                      int
}

func newBertLayer(p *nn.Params, cfg Config) *bertLayer {
	h, inter := cfg.BertHidden, cfg.BertIntermediate
	att := p.Sub("attention")
	return &bertLayer{
		query:        newBertLinear(att.Sub("self").Sub("query"), h, h),
		key:          newBertLinear(att.Sub("self").Sub("key"), h, h),
		value:        newBertLinear(att.Sub("self").Sub("value"), h, h),
		attnOut:      newBertLinear(att.Sub("output").Sub("dense"), h, h),
		attnNorm:     newBertLayerNorm(att.Sub("output").Sub("LayerNorm"), h, cfg.BertEps),
		intermediate: newBertLinear(p.Sub("intermediate").Sub("dense"), h, inter),
		output:       newBertLinear(p.Sub("output").Sub("dense"), inter, h),
		outNorm:      newBertLayerNorm(p.Sub("output").Sub("LayerNorm"), h, cfg.BertEps),
		heads:        cfg.BertHeads,
	}
}

// forward runs the layer on x (n, H); token i attends to token j only where
// mask[i*n+j] (the additive (1 - mask) * min of the reference).
func (l *bertLayer) forward(g *nn.Graph, x *nn.Node, mask []bool) *nn.Node {
	q := g.Linear(x, l.query.w.node(g), l.query.b.node(g)) // (n, H)
	k := g.Linear(x, l.key.w.node(g), l.key.b.node(g))     // (n, H)
	v := g.Linear(x, l.value.w.node(g), l.value.b.node(g)) // (n, H)
	// softmax(q k^T / sqrt(head_dim) + mask) v per head: (n, H)
	ctx := g.MaskedMHA(q, k, v, l.heads, mask)
	// BertSelfOutput: LayerNorm(x + dense(ctx)), (n, H)
	x = l.attnNorm.forward(g, g.LinearResidual(ctx, l.attnOut.w.node(g), l.attnOut.b.node(g), x))
	// BertIntermediate: gelu(dense(x)), (n, I)
	y := g.LinearGELU(x, l.intermediate.w.node(g), l.intermediate.b.node(g))
	// BertOutput: LayerNorm(x + dense(y)), (n, H)
	return l.outNorm.forward(g, g.LinearResidual(y, l.output.w.node(g), l.output.b.node(g), x))
}

// bertModel is BertModel without its pooler.
type bertModel struct {
	embeddings *bertEmbeddings
	layers     []*bertLayer
}

// newBertModel fetches BERT's tensors from p ("embeddings.*",
// "encoder.layer.<i>.*").
func newBertModel(p *nn.Params, cfg Config) *bertModel {
	m := &bertModel{embeddings: newBertEmbeddings(p.Sub("embeddings"), cfg)}
	for i := 0; i < cfg.BertLayers; i++ {
		m.layers = append(m.layers, newBertLayer(p.Sub("encoder").Sub("layer").Index(i), cfg))
	}
	return m
}

// forward returns last_hidden_state (n, H) for the tokens ids at
// positionIDs with the n x n attention mask (true = may attend). With dump
// not nil it adds the stages under their golden names: bert_embeddings,
// bert_layer<i>, bert_last_hidden_state.
func (m *bertModel) forward(g *nn.Graph, ids, positionIDs []int, mask []bool, dump map[string]*nn.Node) *nn.Node {
	n := len(ids)
	if len(mask) != n*n {
		return g.Errorf("gdino: bert: attention mask of %d values for %d tokens", len(mask), n)
	}
	// The mask is read when the graph runs: a copy the caller cannot change.
	mask = append([]bool(nil), mask...)
	h := m.embeddings.forward(g, ids, positionIDs) // (n, H)
	bertDump(g, dump, "bert_embeddings", h)
	for i, l := range m.layers {
		h = l.forward(g, h, mask) // (n, H)
		bertDump(g, dump, "bert_layer"+strconv.Itoa(i), h)
	}
	bertDump(g, dump, "bert_last_hidden_state", h)
	return h
}

// bertDump keeps x under name in dump, when dump is not nil.
func bertDump(g *nn.Graph, dump map[string]*nn.Node, name string, x *nn.Node) {
	if dump != nil && x != nil {
		dump[name] = g.Keep(x)
	}
}

// bertCheck reports a configuration BERT cannot be built from.
func bertCheck(cfg Config) error {
	switch {
	case cfg.BertHidden <= 0 || cfg.BertHeads <= 0 || cfg.BertHidden%cfg.BertHeads != 0:
		return fmt.Errorf("gdino: bert: %d heads for width %d", cfg.BertHeads, cfg.BertHidden)
	case cfg.BertVocab <= 0 || cfg.BertMaxPositions <= 0 || cfg.BertTypeVocab <= 0:
		return fmt.Errorf("gdino: bert: vocabulary %d, %d positions, %d token types", cfg.BertVocab, cfg.BertMaxPositions, cfg.BertTypeVocab)
	case cfg.BertLayers < 0 || cfg.BertIntermediate <= 0:
		return fmt.Errorf("gdino: bert: %d layers of width %d", cfg.BertLayers, cfg.BertIntermediate)
	}
	return nil
}
