package gdino

import "github.com/mam-go/mam-go/nn"

// detectionHeads are groundingdino.py's per-decoder-layer heads:
// class_embed (a ContrastiveEmbed, no parameters) and bbox_embed (an MLP
// d -> d -> d -> 4 per layer; the released checkpoints share one MLP across
// the layers and with the decoder's box refinement, stored under every
// name).
type detectionHeads struct {
	bbox    []*mlp // bbox_embed.<l>
	maxText int
}

func newDetectionHeads(p *nn.Params, cfg Config) *detectionHeads {
	h := &detectionHeads{maxText: cfg.MaxTextLen}
	for l := 0; l < cfg.DecLayers; l++ {
		h.bbox = append(h.bbox, newMLP(p.Sub("bbox_embed").Index(l), cfg.HiddenDim, cfg.HiddenDim, 4, 3))
	}
	return h
}

// forward computes decoder layer l's outputs from hs (k, d) =
// decoder.norm(layer output) and the reference ref (k, 4) that entered the
// layer: logits (k, MaxTextLen) = hs memoryText^T, -inf past the n text
// tokens, and boxes (k, 4) = sigmoid(bbox_embed[l](hs) +
// inverse_sigmoid(ref)), (cx, cy, w, h) normalised to the image.
func (h *detectionHeads) forward(g *nn.Graph, l int, hs, ref, memoryText *nn.Node) (logits, boxes *nn.Node) {
	if l < 0 || l >= len(h.bbox) {
		g.Errorf("gdino: heads: layer %d of %d", l, len(h.bbox))
		return nil, nil
	}
	logits = contrastive(g, hs, memoryText, h.maxText) // (k, MaxTextLen)
	boxes = refine(g, h.bbox[l].forward(g, hs), ref)   // (k, 4)
	return logits, boxes
}
