package gdino

import "strings"

// Phrase is the phrase of one detected box as MAM's GroundingDINO demo
// builds it (util/utils.py get_phrases_from_posmap, then .replace(".", "")):
// the token positions whose probability is above textThreshold (strictly)
// are looked up in fullIDs, the untruncated ids of the caption ([CLS] and
// [SEP] included, as MAM's copy does not clear them), decoded with
// [Tokenizer.Decode], and every "." is deleted. probs holds one query's
// probabilities over the model's text columns (sigmoid of its logits, at
// most 256 of them); positions at or beyond len(fullIDs) or len(probs) are
// ignored (the model's padding columns have probability 0). NaN is never
// above the threshold. No position above the threshold gives "".
func (t *Tokenizer) Phrase(fullIDs []int, probs []float32, textThreshold float32) string {
	n := min(len(fullIDs), len(probs))
	var ids []int
	for i := range n {
		if probs[i] > textThreshold {
			ids = append(ids, fullIDs[i])
		}
	}
	return strings.ReplaceAll(t.Decode(ids), ".", "")
}
