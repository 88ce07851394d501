package gdino

import (
	"context"
	"fmt"
	"strings"

	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

// gdinoSignature are tensors every GroundingDINO checkpoint holds, checked
// by LoadWeights to tell another model's file early.
var gdinoSignature = []string{"bert.embeddings.word_embeddings.weight", "feat_map.weight"}

// LoadWeights opens a GroundingDINO checkpoint (.pth as released: {"model": ...} with "module." prefixes; or .npz) and returns its store with prefixes stripped.
//
// The released groundingdino_swint_ogc.pth and groundingdino_swinb_cogcoor.pth
// load as published; so does a .npz (or a directory of .npy files) holding
// the same names. A file that lacks GroundingDINO's text tensors (another
// model's checkpoint) is an error wrapping weights.ErrMissing.
func LoadWeights(path string) (*weights.Store, error) {
	return LoadWeightsContext(context.Background(), path)
}

// LoadWeightsContext is LoadWeights, stopping with ctx's error when ctx is
// cancelled while the tensors are read.
func LoadWeightsContext(ctx context.Context, path string) (*weights.Store, error) {
	s, err := weights.OpenContext(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("gdino: load: %w", err)
	}
	for _, name := range gdinoSignature {
		if !s.Has(name) {
			return nil, fmt.Errorf("gdino: load: %s is not a GroundingDINO checkpoint: %q: %w", path, name, weights.ErrMissing)
		}
	}
	return s, nil
}

// ignoreKnownUnused marks the checkpoint tensors the inference model
// knowingly does not read (p is the root params): label_enc.weight (the
// training-time denoising label embedding), bert.embeddings.position_ids
// and the Swin blocks' attn.relative_position_index (derivable int64
// buffers) and bert.pooler.* (BERT's pooler, which GroundingDINO never
// reads). Absent names are fine.
func ignoreKnownUnused(p *nn.Params) {
	p.Ignore("label_enc.weight", "bert.embeddings.position_ids",
		"bert.pooler.dense.weight", "bert.pooler.dense.bias")
	if p.Random() {
		return
	}
	pre := p.Prefix()
	for _, name := range p.Store().Names() {
		rel, ok := strings.CutPrefix(name, pre)
		if ok && strings.HasPrefix(rel, "backbone.") && strings.HasSuffix(rel, ".relative_position_index") {
			p.Ignore(rel)
		}
	}
}
