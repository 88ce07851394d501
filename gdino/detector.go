package gdino

// Running the detector: the image side once per image (Encode), then the
// text side, the feature enhancer, query selection, the decoder and the
// post-processing once per caption (Image.Detect), as util/inference.py
// predict does in one call.

import (
	"context"
	"fmt"
	"image"
	"strings"
	"time"

	"github.com/mam-go/mam-go/nn"
)

// defaultMaxPixels is the largest image Encode accepts unless
// Options.MaxPixels says otherwise.
const defaultMaxPixels = 64 << 20

// Image is an image's side of the detector, computed once (Encode) for any
// number of captions: the flattened encoder levels and their position
// embeddings. It is safe for concurrent use.
type Image struct {
	d             *Detector
	width, height int       // the original image
	src, lvlPos   []float32 // (S, d): flattened levels, position + level embeddings
	shapes        [][2]int  // (H, W) of each level
	starts        []int     // level_start_index
}

// Size is the original image's width and height.
func (im *Image) Size() (width, height int) { return im.width, im.height }

// Encode runs the image side of the detector on img: preprocessing, the
// Swin backbone, the neck and the position embeddings. opt's MaxPixels,
// Dump and Stage apply.
func (d *Detector) Encode(ctx context.Context, img image.Image, opt Options) (*Image, error) {
	if ctx == nil {
		return nil, fmt.Errorf("gdino: nil context")
	}
	if d == nil || d.backbone == nil {
		return nil, fmt.Errorf("gdino: detector not loaded")
	}
	if err := checkImage(img, opt.MaxPixels); err != nil {
		return nil, err
	}
	stage := stageTimer(opt.Stage)
	input, h, w, err := Preprocess(img, d.cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadImage, err)
	}
	stage("preprocess")
	if opt.Dump != nil {
		opt.Dump("input", []int{1, 3, h, w}, input)
	}

	g := nn.NewGraph()
	var dump map[string]*nn.Node
	if opt.Dump != nil {
		dump = map[string]*nn.Node{}
	}
	x := g.Input("input", 1, 3, h, w)
	// (1, 3, h, w) -> levels (1, d, H_l, W_l) and their position embeddings
	srcs, pos, shapes := d.backbone.forward(g, x, dump)
	// -> (S, d) each
	src, lvlPos, starts := d.transformer.flatten(g, srcs, pos)
	if opt.Dump != nil {
		g.Keep(src)
		dump["lvl_pos_embed_flatten"] = g.Keep(lvlPos)
	}
	m, err := g.Compile()
	if err != nil {
		return nil, fmt.Errorf("gdino: image side: %w", err)
	}
	defer m.Close()
	if err := m.Exec(ctx, map[string][]float32{"input": input}); err != nil {
		return nil, fmt.Errorf("gdino: image side: %w", err)
	}
	stage("backbone")
	b := img.Bounds()
	im := &Image{
		d: d, width: b.Dx(), height: b.Dy(),
		src: append([]float32(nil), nn.Values(src)...), lvlPos: append([]float32(nil), nn.Values(lvlPos)...),
		shapes: shapes, starts: starts,
	}
	if opt.Dump != nil {
		d.sendDump(opt.Dump, dump)
		im.dumpLevels(opt.Dump)
	}
	return im, nil
}

// Detect finds the boxes caption describes in the encoded image: BERT, the
// feature enhancer, language-guided query selection, the decoder and MAM's
// demo post-processing (thresholds, phrases, NMS). A caption no box
// matches gives an empty Result, not an error.
func (im *Image) Detect(ctx context.Context, caption string, opt Options) (*Result, error) {
	if ctx == nil {
		return nil, fmt.Errorf("gdino: nil context")
	}
	if im == nil || im.d == nil {
		return nil, fmt.Errorf("gdino: image not encoded")
	}
	d := im.d
	stage := stageTimer(opt.Stage)
	text, err := d.prepareText(caption)
	if err != nil {
		return nil, err
	}
	if opt.Dump != nil {
		im.dumpText(opt.Dump, text)
	}
	n, S, dim := len(text.IDs), len(im.src)/d.cfg.HiddenDim, d.cfg.HiddenDim

	// Text side and feature enhancer: (n, d) text and (S, d) image memories.
	g := nn.NewGraph()
	var dump map[string]*nn.Node
	if opt.Dump != nil {
		dump = map[string]*nn.Node{}
	}
	src, lvlPos := g.Input("src", S, dim), g.Input("lvl_pos", S, dim)
	encoded := d.text.forward(g, text.IDs, text.PositionIDs, text.SelfAttnMask, dump)
	memory, memoryText := d.encoder.forward(g, src, lvlPos, encoded, text.SelfAttnMask, text.PositionIDs, im.shapes, dump)
	m, err := g.Compile()
	if err != nil {
		return nil, fmt.Errorf("gdino: encoder: %w", err)
	}
	defer m.Close()
	if err := m.Exec(ctx, map[string][]float32{"src": im.src, "lvl_pos": im.lvlPos}); err != nil {
		return nil, fmt.Errorf("gdino: encoder: %w", err)
	}
	stage("encoder")
	if opt.Dump != nil {
		d.sendDump(opt.Dump, dump)
	}
	mem, memText := nn.Values(memory), nn.Values(memoryText)

	// Two-stage query selection: the decoder's initial references.
	sel, err := d.transformer.selectQueries(ctx, mem, memText, im.shapes, opt.Dump)
	if err != nil {
		return nil, err
	}
	stage("select")

	// Decoder and heads.
	keep := opt.Dump != nil
	g2 := nn.NewGraph()
	k := len(sel.RefUnsig) / 4
	dec := d.transformer.decode(g2, g2.Input("memory", S, dim), g2.Input("memory_text", n, dim), g2.Input("refpoint_unsigmoid", k, 4), im.shapes, im.starts, keep)
	m2, err := g2.Compile()
	if err != nil {
		return nil, fmt.Errorf("gdino: decoder: %w", err)
	}
	defer m2.Close()
	if err := m2.Exec(ctx, map[string][]float32{"memory": mem, "memory_text": memText, "refpoint_unsigmoid": sel.RefUnsig}); err != nil {
		return nil, fmt.Errorf("gdino: decoder: %w", err)
	}
	stage("decoder")
	if keep {
		dec.dump(opt.Dump)
	}

	pp, err := postprocess(nn.Values(dec.Logits), nn.Values(dec.Boxes), im.width, im.height, text.FullIDs, d.tok, opt.PostprocessOptions)
	if err != nil {
		return nil, err
	}
	stage("postprocess")
	res := &Result{Detections: pp.Kept, All: pp.Detections, Caption: PreprocessCaption(caption)}
	for _, id := range text.FullIDs {
		res.Tokens = append(res.Tokens, d.tok.IDToToken(id))
	}
	return res, nil
}

// checkImage rejects nil images, images without pixels and images above
// the pixel limit before any work.
func checkImage(img image.Image, maxPixels int) (err error) {
	defer func() {
		if recover() != nil { // a typed nil image
			err = fmt.Errorf("gdino: nil image: %w", ErrBadImage)
		}
	}()
	if img == nil {
		return fmt.Errorf("gdino: nil image: %w", ErrBadImage)
	}
	b := img.Bounds()
	if b.Dx() <= 0 || b.Dy() <= 0 {
		return fmt.Errorf("gdino: image of %dx%d pixels: %w", b.Dx(), b.Dy(), ErrBadImage)
	}
	if maxPixels <= 0 {
		maxPixels = defaultMaxPixels
	}
	if int64(b.Dx())*int64(b.Dy()) > int64(maxPixels) {
		return fmt.Errorf("gdino: image of %dx%d pixels is above the limit of %d: %w", b.Dx(), b.Dy(), maxPixels, ErrBadImage)
	}
	return nil
}

// stageTimer returns a function that reports the time since its last call
// under a stage's name (a no-op without fn).
func stageTimer(fn func(string, time.Duration)) func(string) {
	last := time.Now()
	return func(name string) {
		if fn != nil {
			now := time.Now()
			fn(name, now.Sub(last))
			last = now
		}
	}
}

// sendDump sends the values of kept nodes under their golden names, in
// the reference's shapes.
func (d *Detector) sendDump(fn DumpFunc, nodes map[string]*nn.Node) {
	for name, n := range nodes {
		if v := nn.Values(n); v != nil {
			fn(name, d.goldenShape(name, nn.Shape(n)), v)
		}
	}
}

// goldenShape is the reference's shape of a dumped stage: with its batch
// axis of 1 (graph nodes that hold one image keep it only where the
// reference's layout needs it), and the deformable attention's values by
// head.
func (d *Detector) goldenShape(name string, s []int) []int {
	if strings.HasSuffix(name, "_deform_value") && len(s) == 2 && s[1] == d.cfg.HiddenDim {
		return []int{1, s[0], d.cfg.Heads, s[1] / d.cfg.Heads}
	}
	if len(s) >= 3 && s[0] == 1 {
		return s
	}
	return append([]int{1}, s...)
}

// dumpLevels sends the caption-independent encoder inputs of the golden
// data: masks, spatial shapes, level starts, valid ratios.
func (im *Image) dumpLevels(fn DumpFunc) {
	L := len(im.shapes)
	shapes := make([]float32, 0, 2*L)
	starts := make([]float32, 0, L)
	ratios := make([]float32, 0, 2*L)
	S := 0
	for l, hw := range im.shapes {
		shapes = append(shapes, float32(hw[0]), float32(hw[1]))
		starts = append(starts, float32(im.starts[l]))
		ratios = append(ratios, 1, 1)
		fn(fmt.Sprintf("mask_l%d", l), []int{1, hw[0], hw[1]}, make([]float32, hw[0]*hw[1]))
		S += hw[0] * hw[1]
	}
	fn("spatial_shapes", []int{L, 2}, shapes)
	fn("level_start_index", []int{L}, starts)
	fn("valid_ratios", []int{1, L, 2}, ratios)
	fn("mask_flatten", []int{1, S}, make([]float32, S))
}

// dumpText sends the tokenizer's outputs under their golden names.
func (im *Image) dumpText(fn DumpFunc, t TextInput) {
	n := len(t.IDs)
	ints := func(v []int) []float32 {
		out := make([]float32, len(v))
		for i, x := range v {
			out[i] = float32(x)
		}
		return out
	}
	bools := func(v []bool) []float32 {
		out := make([]float32, len(v))
		for i, x := range v {
			if x {
				out[i] = 1
			}
		}
		return out
	}
	ones := make([]float32, n)
	for i := range ones {
		ones[i] = 1
	}
	fn("input_ids", []int{1, n}, ints(t.IDs))
	fn("position_ids", []int{1, n}, ints(t.PositionIDs))
	fn("token_type_ids", []int{1, n}, make([]float32, n))
	fn("attention_mask", []int{1, n}, ones)
	fn("text_token_mask", []int{1, n}, ones)
	fn("text_self_attention_masks", []int{1, n, n}, bools(t.SelfAttnMask))
	var cate []float32
	cols := 0
	for _, row := range t.CateToToken {
		cols = len(row)
		cate = append(cate, bools(row)...)
	}
	fn("cate_to_token_mask", []int{len(t.CateToToken), cols}, cate)
}
