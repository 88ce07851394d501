package gdino

import (
	"fmt"
	"slices"
)

// TextInput is what the model needs from a caption: the token ids BERT
// reads and GroundingDINO's sub-sentence masks
// (generate_masks_with_special_tokens_and_transfer_map), cut to the model's
// text length as GroundingDINO.forward cuts them. token_type_ids are all 0
// and the tokenizer's attention mask is all 1, so neither is stored.
type TextInput struct {
	// IDs are the token ids, [CLS] first, truncated to maxLen; when the
	// caption is longer the last kept id is not [SEP].
	IDs []int
	// PositionIDs, len(IDs) of them, restart at 0 in every phrase; [CLS]
	// and the final [SEP] have 0. Computed on the full sequence, then cut.
	PositionIDs []int
	// SelfAttnMask is the n x n sub-sentence mask, n = len(IDs), row-major:
	// SelfAttnMask[i*n+j] is true when token i may attend to token j (both
	// in the same phrase, a phrase including its closing "." or "?"; [CLS]
	// and [SEP] attend only to themselves). Computed on the full sequence,
	// then cut.
	SelfAttnMask []bool
	// CateToToken has one row per phrase (cate_to_token_mask): row k marks
	// the tokens of the k-th phrase, its closing separator excluded (a row
	// may be all false, e.g. for "?" directly followed by "."). When the
	// caption fits in maxLen tokens (always, for ordinary captions) the rows
	// are exactly the reference's: len(FullIDs) columns, one row per
	// separator. For a longer caption the rows are cut like the other masks
	// (len(IDs) columns) and only the phrases that begin inside the kept
	// tokens have a row, so that memory stays bounded by maxLen^2 whatever
	// the caption's length (the reference keeps every phrase over the full
	// length; the model does not read this mask).
	CateToToken [][]bool
	// FullIDs are the untruncated ids of the preprocessed caption, [CLS]
	// to [SEP]: the token ids phrases are read from (see [Tokenizer.Phrase]).
	FullIDs []int
}

// Prepare tokenizes a caption and builds the model's text input. It applies
// [PreprocessCaption] itself (lowercase, strip, append "."), so callers pass
// the caption as the user typed it; preprocessing is idempotent, so an
// already preprocessed caption gives the same result. Ids, position ids and
// the self-attention mask are cut to maxLen tokens (256 for GroundingDINO)
// after the masks have been computed on the whole sequence. It fails with
// ErrEmptyCaption when the caption has no token of its own (empty,
// whitespace only, or only characters the tokenizer drops); a caption of
// punctuation only is valid, as in the reference. Time and memory are
// linear in len(caption) plus maxLen^2.
func (t *Tokenizer) Prepare(caption string, maxLen int) (TextInput, error) {
	if maxLen < 1 {
		return TextInput{}, fmt.Errorf("gdino: text length %d: must be at least 1", maxLen)
	}
	pre, appended := tokPreprocess(caption)
	full := t.Encode(pre)
	// full is [CLS] tokens... [SEP]; when preprocessing appended the ".",
	// the caption's own tokens are all but the last of them.
	own := len(full) - 2
	if appended {
		own--
	}
	if own < 1 {
		return TextInput{}, fmt.Errorf("gdino: caption %q: %w", tokQuoteShort(caption), ErrEmptyCaption)
	}
	mask, pos, cate := tokSubSentence(full, t.SpecialTokenIDs(), maxLen)
	n := min(len(full), maxLen)
	return TextInput{
		IDs:          slices.Clone(full[:n]),
		PositionIDs:  pos,
		SelfAttnMask: mask,
		CateToToken:  cate,
		FullIDs:      full,
	}, nil
}

// tokQuoteShort keeps error messages short for long captions.
func tokQuoteShort(s string) string {
	const limit = 40
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}

// SubSentenceMasks is GroundingDINO's
// generate_masks_with_special_tokens_and_transfer_map for one sequence of
// ids and the separator ids special (for GroundingDINO
// [Tokenizer.SpecialTokenIDs]). It returns the n x n row-major
// self-attention mask (true = may attend), the position ids and one
// cate_to_token row of n columns per separator that is neither the first
// nor the last token (nil when there is none; the reference fails there).
// Walking the separators in order with prev = 0 at the start: one at
// position 0 or n-1 only sees itself and has position id 0; any other,
// at col, makes the tokens prev+1..col (itself included) one phrase that
// attends to itself, with position ids 0, 1, ..., and its row marks
// prev+1..col-1. Memory is n^2: for a long caption use [Tokenizer.Prepare],
// which builds only the part the model reads.
func SubSentenceMasks(ids []int, special []int) (mask []bool, positionIDs []int, cateToToken [][]bool) {
	return tokSubSentence(ids, special, len(ids))
}

// tokSubSentence computes the sub-sentence masks of ids on the whole
// sequence and returns them cut to the first window tokens: the mask is
// w x w and the position ids w long, w = min(window, len(ids)); rows of
// cate_to_token have w columns and exist for the phrases that begin before
// w. The walk stops at the first phrase that begins at or after w, so the
// cost is O(len(ids) + w^2).
func tokSubSentence(ids []int, special []int, window int) (mask []bool, pos []int, cate [][]bool) {
	n := len(ids)
	w := min(max(window, 0), n)
	mask = make([]bool, w*w)
	for i := range w {
		mask[i*w+i] = true
	}
	pos = make([]int, w)
	prev := 0
	for col, id := range ids {
		if prev+1 >= w {
			break
		}
		if !slices.Contains(special, id) {
			continue
		}
		if col == 0 || col == n-1 {
			// Only the diagonal (already set) and position id 0.
			prev = col
			continue
		}
		lo, hi := prev+1, min(col+1, w) // block prev+1..col, cut to the window
		for i := lo; i < hi; i++ {
			pos[i] = i - lo
			row := mask[i*w : (i+1)*w]
			for j := lo; j < hi; j++ {
				row[j] = true
			}
		}
		r := make([]bool, w)
		for j := lo; j < min(col, w); j++ {
			r[j] = true
		}
		cate = append(cate, r)
		prev = col
	}
	return mask, pos, cate
}
