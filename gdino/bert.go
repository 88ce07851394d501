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

// bertEmbeddings is BertEmbeddings: three lookup tables and a LayerNorm.
type bertEmbeddings struct {
	word, position, tokenType nn.Weight // (vocab, H), (positions, H), (types, H)
	norm                      nn.LayerNorm
	vocab, positions, hidden  int
}

func newBertEmbeddings(p *nn.Params, cfg Config) *bertEmbeddings {
	h := cfg.BertHidden
	return &bertEmbeddings{
		word:      p.Weight("word_embeddings.weight", cfg.BertVocab, h),
		position:  p.Weight("position_embeddings.weight", cfg.BertMaxPositions, h),
		tokenType: p.Weight("token_type_embeddings.weight", cfg.BertTypeVocab, h),
		norm:      nn.NewLayerNorm(p.Sub("LayerNorm"), h, float32(cfg.BertEps)),
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
	}, e.word.Node(g), e.position.Node(g), e.tokenType.Node(g))
	return e.norm.Forward(g, sum) // (n, H)
}

// bertLayer is BertLayer: BertAttention (self-attention, dense, residual,
// LayerNorm), then BertIntermediate and BertOutput (GELU feed-forward,
// residual, LayerNorm).
type bertLayer struct {
	query, key, value, attnOut nn.Linear
	attnNorm                   nn.LayerNorm
	intermediate, output       nn.Linear
	outNorm                    nn.LayerNorm
	heads                      int
}

func newBertLayer(p *nn.Params, cfg Config) *bertLayer {
	h, inter := cfg.BertHidden, cfg.BertIntermediate
	att := p.Sub("attention")
	return &bertLayer{
		query:        nn.NewLinear(att.Sub("self").Sub("query"), h, h),
		key:          nn.NewLinear(att.Sub("self").Sub("key"), h, h),
		value:        nn.NewLinear(att.Sub("self").Sub("value"), h, h),
		attnOut:      nn.NewLinear(att.Sub("output").Sub("dense"), h, h),
		attnNorm:     nn.NewLayerNorm(att.Sub("output").Sub("LayerNorm"), h, float32(cfg.BertEps)),
		intermediate: nn.NewLinear(p.Sub("intermediate").Sub("dense"), h, inter),
		output:       nn.NewLinear(p.Sub("output").Sub("dense"), inter, h),
		outNorm:      nn.NewLayerNorm(p.Sub("output").Sub("LayerNorm"), h, float32(cfg.BertEps)),
		heads:        cfg.BertHeads,
	}
}

// forward runs the layer on x (n, H); token i attends to token j only where
// mask[i*n+j] (the additive (1 - mask) * min of the reference).
func (l *bertLayer) forward(g *nn.Graph, x *nn.Node, mask []bool) *nn.Node {
	q := l.query.Forward(g, x) // (n, H)
	k := l.key.Forward(g, x)   // (n, H)
	v := l.value.Forward(g, x) // (n, H)
	// softmax(q k^T / sqrt(head_dim) + mask) v per head: (n, H)
	ctx := g.MaskedMHA(q, k, v, l.heads, mask)
	// BertSelfOutput: LayerNorm(x + dense(ctx)), (n, H)
	x = l.attnNorm.Forward(g, l.attnOut.ForwardResidual(g, ctx, x))
	// BertIntermediate: gelu(dense(x)), (n, I)
	y := l.intermediate.ForwardGELU(g, x)
	// BertOutput: LayerNorm(x + dense(y)), (n, H)
	return l.outNorm.Forward(g, l.output.ForwardResidual(g, y, x))
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
