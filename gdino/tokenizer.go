package gdino

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// ErrBadVocab reports a vocabulary file that cannot serve as BERT's
// WordPiece vocabulary: empty, not UTF-8, or missing one of the tokens the
// text pipeline needs ([CLS], [SEP], [UNK], [PAD], "." and "?").
var ErrBadVocab = errors.New("bad vocabulary")

// ErrEmptyCaption reports a caption with nothing to ground: empty, only
// whitespace, or only characters the tokenizer drops (control characters,
// NUL, U+FFFD), so that its sole token would be the "." that
// [PreprocessCaption] appends.
var ErrEmptyCaption = errors.New("empty caption")

// Literal tokens of bert-base-uncased's vocabulary that the text pipeline
// looks up by name.
const (
	tokCLS  = "[CLS]"
	tokSEP  = "[SEP]"
	tokUNK  = "[UNK]"
	tokPAD  = "[PAD]"
	tokMASK = "[MASK]"
	tokDot  = "."
	tokQM   = "?"
)

// wpMaxWordRunes is WordpieceTokenizer's max_input_chars_per_word: a longer
// word becomes [UNK] as a whole.
const wpMaxWordRunes = 100

// Tokenizer is BERT's uncased WordPiece tokenizer (Hugging Face
// transformers' slow BertTokenizer with do_lower_case: BasicTokenizer then
// WordpieceTokenizer), as GroundingDINO uses it with bert-base-uncased's
// vocab.txt. It is immutable after loading and safe for concurrent use.
type Tokenizer struct {
	vocab map[string]int // token -> id; a repeated line overrides earlier ones
	inv   []string       // id -> token; ids overridden by a later duplicate read as [UNK]

	cls, sep, unk, pad, dot, qm int
	mask                        int // -1 when the vocabulary has no [MASK]

	// Longest vocabulary entry in runes, for plain tokens and for "##"
	// continuations (without the prefix): longer substrings cannot match,
	// so WordPiece never tries them.
	maxHead, maxTail int
}

// LoadVocab reads a vocab.txt file (one token per line, id = line number
// from 0) and returns its tokenizer.
func LoadVocab(path string) (*Tokenizer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gdino: vocabulary: %w", err)
	}
	defer f.Close()
	t, err := NewTokenizer(f)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return t, nil
}

// NewTokenizer reads vocab.txt content from r: one token per line, the id of
// a token is its line number counted from 0. Lines end in "\n", "\r\n" or
// "\r" (Python's universal newlines, as transformers' load_vocab reads the
// file); a final line without a newline counts. A token on several lines
// gets the id of its last line, and the earlier ids decode as [UNK], as in
// transformers. [CLS], [SEP], [UNK], [PAD], "." and "?" must be present
// (ErrBadVocab otherwise); [MASK] is optional.
func NewTokenizer(r io.Reader) (*Tokenizer, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("gdino: vocabulary: %w", err)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("gdino: vocabulary: %w: empty", ErrBadVocab)
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("gdino: vocabulary: %w: not valid UTF-8", ErrBadVocab)
	}
	t := &Tokenizer{vocab: make(map[string]int, bytes.Count(data, []byte{'\n'})+1)}
	s := string(data)
	for len(s) > 0 {
		i := strings.IndexAny(s, "\r\n")
		line := s
		if i < 0 {
			s = ""
		} else {
			line = s[:i]
			if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
			s = s[i+1:]
		}
		t.inv = append(t.inv, line)
		t.vocab[line] = len(t.inv) - 1
	}
	for id, tok := range t.inv {
		if t.vocab[tok] != id {
			continue
		}
		if rest, ok := strings.CutPrefix(tok, "##"); ok {
			t.maxTail = max(t.maxTail, utf8.RuneCountInString(rest))
		}
		t.maxHead = max(t.maxHead, utf8.RuneCountInString(tok))
	}
	need := []struct {
		name string
		dst  *int
	}{{tokCLS, &t.cls}, {tokSEP, &t.sep}, {tokUNK, &t.unk}, {tokPAD, &t.pad}, {tokDot, &t.dot}, {tokQM, &t.qm}}
	var missing []string
	for _, n := range need {
		id, ok := t.vocab[n.name]
		if !ok {
			missing = append(missing, fmt.Sprintf("%q", n.name))
		}
		*n.dst = id
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("gdino: vocabulary of %d lines: %w: missing %s", len(t.inv), ErrBadVocab, strings.Join(missing, ", "))
	}
	// Ids whose token a later line redefined decode as [UNK].
	for id, tok := range t.inv {
		if t.vocab[tok] != id {
			t.inv[id] = tokUNK
		}
	}
	t.mask = -1
	if id, ok := t.vocab[tokMASK]; ok {
		t.mask = id
	}
	return t, nil
}

// VocabSize is the number of ids: the number of lines of the vocabulary
// file (30522 for bert-base-uncased), the row count of BERT's word
// embedding.
func (t *Tokenizer) VocabSize() int { return len(t.inv) }

// CLSID is the id of [CLS] (101 in bert-base-uncased).
func (t *Tokenizer) CLSID() int { return t.cls }

// SEPID is the id of [SEP] (102 in bert-base-uncased).
func (t *Tokenizer) SEPID() int { return t.sep }

// UNKID is the id of [UNK] (100 in bert-base-uncased).
func (t *Tokenizer) UNKID() int { return t.unk }

// PADID is the id of [PAD] (0 in bert-base-uncased).
func (t *Tokenizer) PADID() int { return t.pad }

// SpecialTokenIDs are the ids that separate sub-sentences in GroundingDINO
// (its specical_tokens): [CLS], [SEP], "." and "?" (101, 102, 1012, 1029 in
// bert-base-uncased). The slice is a fresh copy.
func (t *Tokenizer) SpecialTokenIDs() []int { return []int{t.cls, t.sep, t.dot, t.qm} }

// TokenID is the id of a vocabulary entry, and whether it exists.
func (t *Tokenizer) TokenID(token string) (int, bool) {
	id, ok := t.vocab[token]
	return id, ok
}

// IDToToken is the vocabulary entry of id; an id outside the vocabulary, or
// one whose token a later line redefined, is "[UNK]" (transformers'
// convert_ids_to_tokens).
func (t *Tokenizer) IDToToken(id int) string {
	if id < 0 || id >= len(t.inv) {
		return tokUNK
	}
	return t.inv[id]
}

// Tokenize splits text into WordPiece tokens as transformers'
// BertTokenizer.tokenize does (do_lower_case, no [CLS]/[SEP] added):
// the literal special tokens [CLS], [SEP], [UNK], [PAD] and [MASK] are kept
// whole (case-sensitive); the rest is lowercased, cleaned (NUL, U+FFFD and
// control characters dropped, whitespace made a space), CJK ideographs are
// split apart, words are split on whitespace, stripped of accents (NFD
// without nonspacing marks) and split at every punctuation character, and
// each piece is matched greedily against the vocabulary from the left, with
// "##" continuations; a piece longer than 100 characters, or one that no
// sequence of vocabulary entries spells, is [UNK]. Invalid UTF-8 bytes are
// read as U+FFFD and so dropped. Time and memory are linear in len(text).
func (t *Tokenizer) Tokenize(text string) []string {
	ids := t.appendIDs(nil, text)
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = t.inv[id]
	}
	return out
}

// Encode is the input_ids of transformers' tokenizer(text) without
// truncation: [CLS], the ids of Tokenize(text), [SEP]. A token missing
// from the vocabulary is [UNK].
func (t *Tokenizer) Encode(text string) []int {
	ids := append(make([]int, 0, len(text)/4+2), t.cls)
	ids = t.appendIDs(ids, text)
	return append(ids, t.sep)
}

// Decode turns ids back into text as transformers' decode (keeping special
// tokens, clean_up_tokenization_spaces on): the tokens joined by spaces,
// " ##" removed, surrounding whitespace stripped, then the spaces before
// ".", "?", "!", ",", "n't", "'m", "'s", "'ve", "'re" and around a lone "'"
// removed. Ids outside the vocabulary decode as [UNK].
func (t *Tokenizer) Decode(ids []int) string {
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(t.IDToToken(id))
	}
	s := strings.ReplaceAll(b.String(), " ##", "")
	return tokCleanUp(strings.TrimFunc(s, tokIsPySpace))
}

// tokCleanUp is transformers' clean_up_tokenization: the same replacements
// in the same order (each over the whole string, left to right).
func tokCleanUp(s string) string {
	for _, p := range [...][2]string{
		{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
		{" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
	} {
		s = strings.ReplaceAll(s, p[0], p[1])
	}
	return s
}

// PreprocessCaption is GroundingDINO's preprocess_caption: Python's
// str.lower() (full Unicode lowercasing, final sigma included), str.strip()
// (Python's whitespace), and a "." appended unless the result already ends
// with one. "cat . dog" becomes "cat . dog.".
func PreprocessCaption(caption string) string {
	s, _ := tokPreprocess(caption)
	return s
}

// tokPreprocess is PreprocessCaption, also reporting whether it appended
// the ".".
func tokPreprocess(caption string) (string, bool) {
	s := strings.TrimFunc(tokPyLower(caption), tokIsPySpace)
	if strings.HasSuffix(s, ".") {
		return s, false
	}
	return s + ".", true
}

// appendIDs appends the ids of Tokenize(text) to dst.
func (t *Tokenizer) appendIDs(dst []int, text string) []int {
	w := &wpState{t: t, ids: dst}
	for len(text) > 0 {
		i := strings.IndexByte(text, '[')
		if i < 0 {
			w.basic(text)
			break
		}
		if tok, id, ok := t.literalSpecial(text[i:]); ok {
			w.basic(text[:i])
			w.ids = append(w.ids, id)
			text = text[i+len(tok):]
			continue
		}
		w.basic(text[:i+1])
		text = text[i+1:]
	}
	return w.ids
}

// literalSpecial reports whether s starts with one of BertTokenizer's
// special tokens, which transformers splits out of the text before the
// basic tokenizer runs (its no-split tokens), and the id it maps to.
func (t *Tokenizer) literalSpecial(s string) (string, int, bool) {
	if len(s) < 5 || s[0] != '[' {
		return "", 0, false
	}
	for _, c := range [...]struct {
		tok string
		id  int
	}{{tokCLS, t.cls}, {tokSEP, t.sep}, {tokUNK, t.unk}, {tokPAD, t.pad}, {tokMASK, t.mask}} {
		if strings.HasPrefix(s, c.tok) {
			if c.id < 0 {
				c.id = t.unk
			}
			return c.tok, c.id, true
		}
	}
	return "", 0, false
}

// wpState carries the output and the scratch buffers of one Tokenize call.
// Pieces of text separated by literal special tokens are tokenized
// independently, but a word never spans such a boundary, so the buffers
// only need to be flushed at the end of each piece.
type wpState struct {
	t    *Tokenizer
	ids  []int
	word []byte // current whitespace-delimited word, lowercased and cleaned
	nfd  []byte // the word after NFD
	part []byte // one punctuation-free part of the word, marks dropped
	buf  []byte // "##" + substring, for vocabulary lookups
	offs [wpMaxWordRunes + 1]int
}

// basic runs BasicTokenizer over s and WordPiece over its words.
func (w *wpState) basic(s string) {
	for _, r := range s {
		if r < utf8.RuneSelf { // fast path, same decisions as below
			switch {
			case r == ' ' || r == '\t' || r == '\n' || r == '\r':
				w.flushWord()
			case r < 0x20 || r == 0x7f:
				// control: dropped
			case 'A' <= r && r <= 'Z':
				w.word = append(w.word, byte(r)+'a'-'A')
			default:
				w.word = append(w.word, byte(r))
			}
			continue
		}
		// Per-character lowercasing (transformers lowercases the non-special
		// text character by character before the basic tokenizer runs).
		if r == 'İ' {
			w.word = append(w.word, "i\u0307"...)
			continue
		}
		r = unicode.ToLower(r)
		switch {
		case r == 0 || r == utf8.RuneError || tokIsControl(r):
			// dropped
		case tokIsBertSpace(r) || tokIsPySpace(r):
			w.flushWord()
		case tokIsCJK(r):
			w.flushWord()
			w.word = utf8.AppendRune(w.word, r)
			w.flushWord()
		default:
			w.word = utf8.AppendRune(w.word, r)
		}
	}
	w.flushWord()
}

// flushWord strips the accents of the current word, splits it at
// punctuation and WordPieces each part.
func (w *wpState) flushWord() {
	if len(w.word) == 0 {
		return
	}
	src := w.word
	if !tokASCII(src) {
		w.nfd = norm.NFD.Append(w.nfd[:0], src...)
		src = w.nfd
	}
	// Split at punctuation, dropping nonspacing marks; the part being
	// gathered goes to its own buffer because dropped marks make it
	// non-contiguous in src.
	part := w.part[:0]
	for i := 0; i < len(src); {
		r, n := utf8.DecodeRune(src[i:])
		i += n
		switch {
		case r >= utf8.RuneSelf && unicode.Is(unicode.Mn, r):
		case tokIsPunct(r):
			w.piece(part)
			part = part[:0]
			w.piece(src[i-n : i])
		default:
			part = append(part, src[i-n:i]...)
		}
	}
	w.piece(part)
	w.part = part
	w.word = w.word[:0]
}

// piece appends the WordPiece ids of one punctuation-free word.
func (w *wpState) piece(p []byte) {
	if len(p) == 0 {
		return
	}
	t := w.t
	n := 0
	for i := range p {
		if !utf8.RuneStart(p[i]) {
			continue
		}
		if n == wpMaxWordRunes {
			w.ids = append(w.ids, t.unk)
			return
		}
		w.offs[n] = i
		n++
	}
	w.offs[n] = len(p)
	mark := len(w.ids)
	for start := 0; start < n; {
		limit := t.maxHead
		if start > 0 {
			limit = t.maxTail
		}
		found := false
		for end := min(n, start+limit); end > start; end-- {
			sub := p[w.offs[start]:w.offs[end]]
			var id int
			var ok bool
			if start == 0 {
				id, ok = t.vocab[string(sub)]
			} else {
				w.buf = append(append(w.buf[:0], "##"...), sub...)
				id, ok = t.vocab[string(w.buf)]
			}
			if ok {
				w.ids = append(w.ids, id)
				start = end
				found = true
				break
			}
		}
		if !found {
			w.ids = append(w.ids[:mark], t.unk)
			return
		}
	}
}

// tokASCII reports whether b is all ASCII (then NFD is the identity and no
// character is a nonspacing mark).
func tokASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// tokIsBertSpace is BasicTokenizer's _is_whitespace: space, \t, \n, \r and
// category Zs.
func tokIsBertSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || unicode.Is(unicode.Zs, r)
}

// tokIsPySpace is Python's str.isspace: what str.split() and str.strip()
// treat as whitespace. Besides what Go's unicode.IsSpace accepts it has the
// information separators U+001C..U+001F.
func tokIsPySpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// tokIsControl is BasicTokenizer's _is_control: any category C* character
// (unassigned code points included) except \t, \n and \r.
func tokIsControl(r rune) bool {
	if r == '\t' || r == '\n' || r == '\r' {
		return false
	}
	if r < utf8.RuneSelf {
		return r < 0x20 || r == 0x7f
	}
	if unicode.Is(unicode.C, r) {
		return true
	}
	// Unassigned (Cn): in no general category at all.
	return !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z)
}

// tokIsPunct is BasicTokenizer's _is_punctuation: all non-alphanumeric
// printable ASCII and every Unicode category P* character.
func tokIsPunct(r rune) bool {
	if (r >= 33 && r <= 47) || (r >= 58 && r <= 64) || (r >= 91 && r <= 96) || (r >= 123 && r <= 126) {
		return true
	}
	return r >= utf8.RuneSelf && unicode.Is(unicode.P, r)
}

// tokIsCJK is BasicTokenizer's _is_chinese_char: the CJK Unified
// Ideographs blocks and their extensions and compatibility blocks.
func tokIsCJK(r rune) bool {
	return (r >= 0x4E00 && r <= 0x9FFF) ||
		(r >= 0x3400 && r <= 0x4DBF) ||
		(r >= 0x20000 && r <= 0x2A6DF) ||
		(r >= 0x2A700 && r <= 0x2B73F) ||
		(r >= 0x2B740 && r <= 0x2B81F) ||
		(r >= 0x2B820 && r <= 0x2CEAF) ||
		(r >= 0xF900 && r <= 0xFAFF) ||
		(r >= 0x2F800 && r <= 0x2FA1F)
}

// tokPyLower is Python's str.lower(): the simple lowercase mapping, except
// U+0130 (which lowercases to "i" + combining dot above) and the final-sigma
// rule for U+03A3. Invalid UTF-8 bytes become U+FFFD.
func tokPyLower(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i, r := range s {
		switch r {
		case 'İ':
			b.WriteString("i\u0307")
		case 'Σ':
			if tokFinalSigma(s, i) {
				b.WriteRune('ς')
			} else {
				b.WriteRune('σ')
			}
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// tokFinalSigma reports whether the capital sigma at byte i of s is in the
// Final_Sigma context: preceded by a cased letter (skipping case-ignorable
// characters) and not followed by one (again skipping case-ignorables).
// Each scan stops at the first character that is not case-ignorable, so
// all the sigmas of a string cost linear time together.
func tokFinalSigma(s string, i int) bool {
	j := i
	prevCased := false
	for j > 0 {
		r, n := utf8.DecodeLastRuneInString(s[:j])
		j -= n
		if !tokCaseIgnorable(r) {
			prevCased = tokCased(r)
			break
		}
	}
	if !prevCased {
		return false
	}
	for _, r := range s[i+len("Σ"):] {
		if !tokCaseIgnorable(r) {
			return !tokCased(r)
		}
	}
	return true
}

// tokCased is Unicode's Cased property.
func tokCased(r rune) bool {
	return unicode.In(r, unicode.Lu, unicode.Ll, unicode.Lt, unicode.Other_Lowercase, unicode.Other_Uppercase)
}

// tokCaseIgnorable is Unicode's Case_Ignorable property: categories Mn, Me,
// Cf, Lm, Sk and the Word_Break classes MidLetter, MidNumLet and
// Single_Quote.
func tokCaseIgnorable(r rune) bool {
	switch r {
	case '\'', '.', ':', 0xB7, 0x387, 0x55F, 0x5F4, 0x2018, 0x2019, 0x2024, 0x2027,
		0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A:
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}
