package gdino

import "github.com/mam-go/mam-go/nn"

// textEncoder is GroundingDINO's text branch: BertModelWarper
// (bertwarper.py), which runs BERT with the sub-sentence attention mask and
// position ids, and feat_map (groundingdino.py), the Linear(BertHidden ->
// 256) that maps last_hidden_state to encoded_text.
type textEncoder struct {
	bert    *bertModel
	featMap nn.Linear
	cfg     Config
}

// newTextEncoder fetches the text encoder's tensors from the root params p
// ("bert.*", "feat_map.*"). The pooler (bert.pooler.*) and the position_ids
// buffer are not fetched: ignoreKnownUnused marks them.
func newTextEncoder(p *nn.Params, cfg Config) *textEncoder {
	return &textEncoder{
		bert:    newBertModel(p.Sub("bert"), cfg),
		featMap: nn.NewLinear(p.Sub("feat_map"), cfg.BertHidden, cfg.HiddenDim),
		cfg:     cfg,
	}
}

// forward builds the text graph for n tokens: ids and positionIDs (n each,
// from the tokenizer and the sub-sentence split) and mask (n x n, true =
// token i may attend to token j) are read when the graph is built, and
// copied. It returns encoded_text (n, 256). Ids outside the vocabulary,
// position ids outside [0, BertMaxPositions), zero tokens or a mask of the
// wrong size are graph errors (g.Err). With dump not nil the stages are
// added (and kept) under their golden names: bert_embeddings,
// bert_layer<i>, bert_last_hidden_state (n, BertHidden) and encoded_text.
func (t *textEncoder) forward(g *nn.Graph, ids, positionIDs []int, mask []bool, dump map[string]*nn.Node) (encodedText *nn.Node) {
	if err := bertCheck(t.cfg); err != nil {
		return g.Fail(err)
	}
	// BertModelWarper: last_hidden_state, (n, BertHidden)
	last := t.bert.forward(g, ids, positionIDs, mask, dump)
	// feat_map: (n, 256)
	encodedText = t.featMap.Forward(g, last)
	bertDump(g, dump, "encoded_text", encodedText)
	return encodedText
}
