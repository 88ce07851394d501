package gdino

// The whole detector (models/GroundingDINO/groundingdino.py GroundingDINO):
// the image side (Swin backbone, neck, position embeddings), the text side
// (BERT, feat_map), the transformer (feature enhancer, query selection,
// decoder) and the heads, built from one checkpoint.

import (
	"context"
	"errors"
	"fmt"
	"image"
	"time"

	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/sam"
	"github.com/mam-go/mam-go/weights"
)

// Sentinel errors of the detector, wrapped with context; errors.Is finds
// them. The tokenizer's ErrEmptyCaption and ErrBadVocab, and the weights
// package's ErrMissing and ErrShape for a checkpoint of another model, are
// the others a caller may meet.
var (
	// ErrBadImage: a nil image, one without pixels, or one larger than the
	// pixel limit. It is sam.ErrBadImage, so one errors.Is test serves both.
	ErrBadImage = sam.ErrBadImage
	// ErrNoDetection: no box scored above the box threshold.
	ErrNoDetection = errors.New("no box above the threshold")
)

// Detector is a loaded GroundingDINO model with its tokenizer. It is safe
// for concurrent use: every call builds its own graphs over the shared,
// read-only weights.
type Detector struct {
	cfg         Config
	tok         *Tokenizer
	backbone    *imageBackbone
	text        *textEncoder
	encoder     *encoder
	transformer *transformer
}

// newModel builds every module from p: the one description of the
// checkpoint's schema (RandomWeights runs it over random parameters).
func newModel(p *nn.Params, cfg Config) *Detector {
	ignoreKnownUnused(p)
	return &Detector{
		cfg:         cfg,
		backbone:    newImageBackbone(p, cfg),
		text:        newTextEncoder(p, cfg),
		encoder:     newEncoder(p.Sub("transformer").Sub("encoder"), cfg),
		transformer: newTransformer(p, cfg),
	}
}

// New builds a detector of configuration cfg from a checkpoint's tensors
// (LoadWeights) and a tokenizer (LoadVocab). Every tensor the model needs
// is checked by name and shape; tensors the inference model does not use
// (the training-time label_enc.weight, derivable buffers, BERT's pooler)
// are ignored, any other extra tensor is an error naming it.
func New(s *weights.Store, cfg Config, tok *Tokenizer) (*Detector, error) {
	if s == nil || tok == nil {
		return nil, fmt.Errorf("gdino: nil weights or tokenizer")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if tok.VocabSize() != cfg.BertVocab {
		return nil, fmt.Errorf("gdino: the vocabulary has %d tokens, the model %d: %w", tok.VocabSize(), cfg.BertVocab, ErrBadVocab)
	}
	p := nn.NewParams(s)
	d := newModel(p, cfg)
	if err := p.Err(); err != nil {
		return nil, fmt.Errorf("gdino: %s: %w", s.Source(), err)
	}
	if err := p.CheckUnused(); err != nil {
		return nil, fmt.Errorf("gdino: %w", err)
	}
	d.tok = tok
	return d, nil
}

// Load reads a GroundingDINO checkpoint (groundingdino_swint_ogc.pth as
// released, or its .npz conversion) and BERT's vocab.txt, recognises the
// configuration from the checkpoint's shapes (Swin-T OGC, Swin-B, or the
// golden test model) and builds the detector.
func Load(ctx context.Context, checkpoint, vocab string) (*Detector, error) {
	if ctx == nil {
		return nil, fmt.Errorf("gdino: nil context")
	}
	s, err := LoadWeightsContext(ctx, checkpoint)
	if err != nil {
		return nil, err
	}
	tok, err := LoadVocab(vocab)
	if err != nil {
		return nil, err
	}
	cfg, err := DetectConfig(s)
	if err != nil {
		return nil, err
	}
	return New(s, cfg, tok)
}

// DetectConfig recognises the configuration of a checkpoint from its
// shapes: the Swin patch embedding width and depth of stage 2, and BERT's
// width.
func DetectConfig(s *weights.Store) (Config, error) {
	embed, ok := s.Shape("backbone.0.patch_embed.proj.weight")
	if !ok || len(embed) != 4 {
		return Config{}, fmt.Errorf("gdino: %s: no Swin patch embedding: %q: %w", s.Source(), "backbone.0.patch_embed.proj.weight", weights.ErrMissing)
	}
	bert, _ := s.Shape("bert.embeddings.word_embeddings.weight")
	for _, c := range []Config{SwinTOGC(), SwinBCogCoor(), Tiny()} {
		depth := 0
		for s.Has(fmt.Sprintf("backbone.0.layers.2.blocks.%d.norm1.weight", depth)) {
			depth++
		}
		if embed[0] == c.SwinEmbedDim && depth == c.SwinDepths[2] && len(bert) == 2 && bert[1] == c.BertHidden {
			return c, nil
		}
	}
	return Config{}, fmt.Errorf("gdino: %s: Swin width %d and BERT %v match no known configuration: %w", s.Source(), embed[0], bert, weights.ErrShape)
}

// RandomWeights makes a checkpoint of configuration cfg with seeded random
// values, through the same constructors that read real checkpoints, for
// benchmarks and tests at full size.
func RandomWeights(cfg Config, seed int64) *weights.Store {
	p := nn.RandomParams(seed, nil)
	newModel(p, cfg)
	return p.Store()
}

// Config is the detector's configuration.
func (d *Detector) Config() Config { return d.cfg }

// Tokenizer is the detector's tokenizer.
func (d *Detector) Tokenizer() *Tokenizer { return d.tok }

// Options configure a detection.
type Options struct {
	PostprocessOptions
	// MaxPixels bounds the image's width*height (0: 64 megapixels).
	MaxPixels int
	// Dump, when set, receives every intermediate tensor under the names
	// of the golden reference data.
	Dump DumpFunc
	// Stage, when set, is told the duration of each stage (preprocess,
	// backbone, text, encoder, select, decoder, postprocess).
	Stage func(name string, d time.Duration)
}

// DefaultOptions are MAM's demo thresholds (box 0.25, text 0.25, NMS 0.5).
func DefaultOptions() Options { return Options{PostprocessOptions: DefaultPostprocessOptions()} }

// Result is what a detection finds for one caption.
type Result struct {
	// Detections after NMS, highest score first (ties: query order): the
	// boxes MAM's demo keeps. Detections[0] is the box it gives SAM.
	Detections []Detection
	// All are every detection above the box threshold, in query order,
	// before NMS.
	All []Detection
	// Caption is the caption as the model read it (lowercased, "."
	// appended), Tokens its tokens ([CLS] ... [SEP]).
	Caption string
	Tokens  []string
}

// Best returns the highest-scoring detection (the box MAM's demo gives
// SAM) or ErrNoDetection.
func (r *Result) Best() (Detection, error) {
	if r == nil || len(r.Detections) == 0 {
		return Detection{}, ErrNoDetection
	}
	return r.Detections[0], nil
}

// Detect finds the boxes that caption describes in img: the image side,
// then as Image.Detect.
func (d *Detector) Detect(ctx context.Context, img image.Image, caption string, opt Options) (*Result, error) {
	if ctx == nil {
		return nil, fmt.Errorf("gdino: nil context")
	}
	// Check the caption before the image side's work.
	if _, err := d.prepareText(caption); err != nil {
		return nil, err
	}
	im, err := d.Encode(ctx, img, opt)
	if err != nil {
		return nil, err
	}
	return im.Detect(ctx, caption, opt)
}

func (d *Detector) prepareText(caption string) (TextInput, error) {
	if d == nil || d.tok == nil {
		return TextInput{}, fmt.Errorf("gdino: detector not loaded")
	}
	return d.tok.Prepare(caption, d.cfg.MaxTextLen)
}
