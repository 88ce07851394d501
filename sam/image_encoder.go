package sam

// This file mirrors segment_anything/modeling/image_encoder.py:
// ImageEncoderViT (PatchEmbed, pos_embed, Blocks with windowed or global
// Attention with decomposed relative positions, and the neck).

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

// ErrInput is wrapped by errors for model inputs of the wrong shape.
var ErrInput = errors.New("bad input")

// ImageEncoder is ImageEncoderViT: (1, 3, S, S) normalised image ->
// (1, PromptDim, E, E) image embeddings, compiled as one graph whose
// weights are bound when it is built. Within a run the buffers of dead
// intermediates (a block's activations, once the next block has read them)
// are recycled for later ones. It is safe for concurrent use (runs are
// serialised).
type ImageEncoder struct {
	cfg        Config
	patchEmbed patchEmbed
	posEmbed   nn.Weight // (1, E, E, C)
	blocks     []block
	neck       neck

	mu     sync.Mutex
	plain  *encGraph // Forward
	traced *encGraph // ForwardTrace with a trace, built on first use
}

// encGraph is the encoder compiled as one graph: its machine, its output
// node and, in the tracing variant, the stage outputs kept for the trace.
type encGraph struct {
	m      *nn.Machine
	out    *nn.Node
	stages []encStage
}

// encStage is a named intermediate result of a tracing encGraph.
type encStage struct {
	name string
	node *nn.Node
}

// newImageEncoder fetches the encoder's parameters from p (the
// "image_encoder." view); cfg must be valid.
func newImageEncoder(p *nn.Params, cfg Config) *ImageEncoder {
	c, es := cfg.EncoderDim, cfg.EmbedSize()
	e := &ImageEncoder{
		cfg:        cfg,
		patchEmbed: newPatchEmbed(p.Sub("patch_embed"), cfg.PatchSize, 3, c),
		posEmbed:   p.Weight("pos_embed", 1, es, es, c),
		neck:       newNeck(p.Sub("neck"), c, cfg.PromptDim),
	}
	for i := 0; i < cfg.EncoderDepth; i++ {
		e.blocks = append(e.blocks, newBlock(p.Sub("blocks").Index(i), cfg, i))
	}
	return e
}

// NewImageEncoder builds the encoder from w, the "image_encoder." view of
// a SAM checkpoint, checking every tensor's name and shape against cfg, and
// compiles its graph. Tensors under w that the model does not use are an
// error (a checkpoint of another configuration).
func NewImageEncoder(w *weights.Store, cfg Config) (*ImageEncoder, error) {
	e, err := build(w, cfg, "image encoder", true, newImageEncoder)
	if err != nil {
		return nil, err
	}
	if err := e.compile(); err != nil {
		return nil, err
	}
	return e, nil
}

// compile builds the graph of Forward.
func (e *ImageEncoder) compile() error {
	var err error
	if e.plain, err = e.build(false); err != nil {
		return fmt.Errorf("sam: image encoder: %w", err)
	}
	return nil
}

// Config returns the configuration the encoder was built for.
func (e *ImageEncoder) Config() Config { return e.cfg }

// build compiles ImageEncoderViT.forward: x (1, 3, S, S) -> patch embedding
// -> blocks -> neck -> (1, PromptDim, E, E). With trace, the outputs of the
// patch embedding and of every block are kept for ForwardTrace.
func (e *ImageEncoder) build(trace bool) (*encGraph, error) {
	s := e.cfg.ImageSize
	g := nn.NewGraph()
	eg := &encGraph{}
	stage := func(name string, n *nn.Node) {
		if trace && n != nil {
			eg.stages = append(eg.stages, encStage{name, g.Keep(n)})
		}
	}
	x := g.Input("x", 1, 3, s, s)
	// x = patch_embed(x) + pos_embed: (1, 3, S, S) -> (1, E, E, C)
	h := e.patchEmbed.forward(g, x, e.posEmbed.Node(g))
	stage("embed", h)
	for i, b := range e.blocks {
		h = b.forward(g, h) // (1, E, E, C)
		stage(fmt.Sprintf("block%02d", i), h)
	}
	// neck(x.permute(0, 3, 1, 2)): (1, E, E, C) -> (1, P, E, E)
	eg.out = e.neck.forward(g, h)
	m, err := g.Compile()
	if err != nil {
		return nil, err
	}
	eg.m = m
	return eg, nil
}

// Forward computes the image embeddings (1, PromptDim, E, E) of a
// preprocessed image x (1, 3, S, S) (see Config.Preprocess).
func (e *ImageEncoder) Forward(ctx context.Context, x *nn.Tensor) (*nn.Tensor, error) {
	return e.ForwardTrace(ctx, x, nil)
}

// ForwardTrace is Forward calling trace (when not nil) with each
// intermediate result: "embed" (patch embedding + pos_embed, NHWC
// (1, E, E, C)), "block00", "block01", ... (each block's NHWC output) and
// "neck" (the embeddings). trace must not modify the tensors.
func (e *ImageEncoder) ForwardTrace(ctx context.Context, x *nn.Tensor, trace func(stage string, t *nn.Tensor)) (*nn.Tensor, error) {
	s := e.cfg.ImageSize
	if !x.HasShape(1, 3, s, s) {
		var sh []int
		if x != nil {
			sh = x.Shape
		}
		return nil, fmt.Errorf("sam: image encoder: input of shape %v, want (1, 3, %d, %d): %w", sh, s, s, ErrInput)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	eg := e.plain
	if trace != nil {
		if e.traced == nil {
			t, err := e.build(true)
			if err != nil {
				return nil, fmt.Errorf("sam: image encoder: %w", err)
			}
			e.traced = t
		}
		eg = e.traced
	}
	if err := eg.m.Exec(ctx, map[string][]float32{"x": x.Data}); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, fmt.Errorf("sam: image encoder: %w", err)
	}
	// Outputs get a fresh buffer every run: no copy needed.
	out := nn.NewTensor(nn.Values(eg.out), eg.out.Shape()...)
	for _, st := range eg.stages {
		trace(st.name, nn.NewTensor(nn.Values(st.node), st.node.Shape()...))
	}
	if trace != nil {
		trace("neck", out)
	}
	return out, nil
}

// patchEmbed is PatchEmbed: Conv2d(3, C, kernel = stride = P), then the
// permutation to NHWC.
type patchEmbed struct {
	proj  nn.Linear // the conv weight (C, 3, P, P) viewed as (C, 3*P*P)
	patch int
}

func newPatchEmbed(p *nn.Params, patch, in, dim int) patchEmbed {
	w := p.Weight("proj.weight", dim, in, patch, patch)
	return patchEmbed{
		proj:  nn.Linear{Weight: w.View(dim, in*patch*patch), Bias: p.Weight("proj.bias", dim)},
		patch: patch,
	}
}

// forward is proj(x).permute(0, 2, 3, 1) + pos: x (1, 3, S, S) ->
// (1, E, E, C). The convolution is a Linear over the patches (its kernel
// is its stride), with the position embedding pos as its residual.
func (pe patchEmbed) forward(g *nn.Graph, x, pos *nn.Node) *nn.Node {
	h := g.Patchify(x, pe.patch)              // (1, E, E, 3*P*P)
	return pe.proj.ForwardResidual(g, h, pos) // (1, E, E, C)
}

// block is Block: a pre-norm transformer block with windowed (window > 0)
// or global attention.
type block struct {
	norm1, norm2 nn.LayerNorm
	attn         encoderAttention
	mlp          mlpBlock
	window       int // window_size, 0 for global attention
}

func newBlock(p *nn.Params, cfg Config, i int) block {
	c, eps := cfg.EncoderDim, float32(cfg.LayerNormEps)
	window, side := cfg.WindowSize, cfg.WindowSize
	if cfg.IsGlobal(i) {
		window, side = 0, cfg.EmbedSize()
	}
	return block{
		norm1:  nn.NewLayerNorm(p.Sub("norm1"), c, eps),
		attn:   newEncoderAttention(p.Sub("attn"), c, cfg.EncoderHeads, side),
		norm2:  nn.NewLayerNorm(p.Sub("norm2"), c, eps),
		mlp:    newMLPBlock(p.Sub("mlp"), c, int(float64(c)*cfg.MLPRatio), true),
		window: window,
	}
}

// forward: x (1, E, E, C) -> (1, E, E, C).
//
// The window partition is folded into the attention: the qkv projection
// runs on the unpadded tokens, and the attention gathers each window's
// tokens (a padding token, zero after norm1, projects to the qkv bias) and
// writes back only the real ones, which is what window_unpartition keeps.
func (b block) forward(g *nn.Graph, x *nn.Node) *nn.Node {
	shortcut := x
	h := b.norm1.Forward(g, x)                                // (1, E, E, C)
	x = b.attn.forwardResidual(g, h, shortcut, b.window)      // shortcut + attn(x)
	return b.mlp.forwardResidual(g, b.norm2.Forward(g, x), x) // x + mlp(norm2(x))
}

// encoderAttention is image_encoder.py's Attention: multi-head attention
// with decomposed relative positions (use_rel_pos).
type encoderAttention struct {
	qkv, proj        nn.Linear
	relPosH, relPosW nn.Weight // (2*side-1, C/heads)
	heads            int
}

func newEncoderAttention(p *nn.Params, dim, heads, side int) encoderAttention {
	hd := dim / heads
	return encoderAttention{
		qkv:     nn.NewLinear(p.Sub("qkv"), dim, 3*dim),
		proj:    nn.NewLinear(p.Sub("proj"), dim, dim),
		relPosH: p.Weight("rel_pos_h", 2*side-1, hd),
		relPosW: p.Weight("rel_pos_w", 2*side-1, hd),
		heads:   heads,
	}
}

// forwardResidual is res + forward(x) on x (1, E, E, C), attending within
// window x window windows (window > 0) or globally.
func (a encoderAttention) forwardResidual(g *nn.Graph, x, res *nn.Node, window int) *nn.Node {
	qkvB := a.qkv.Bias.Node(g)
	h := a.qkv.Forward(g, x) // (1, E, E, 3C)
	// softmax(q k^T * scale + rel_h + rel_w) v per head: (1, E, E, 3C) -> (1, E, E, C)
	h = g.RelPosSDPA(h, qkvB, a.relPosH.Node(g), a.relPosW.Node(g), a.heads, window)
	return a.proj.ForwardResidual(g, h, res) // (1, E, E, C)
}

// neck is ImageEncoderViT.neck: Conv1x1 (no bias), LayerNorm2d, Conv3x3
// (no bias, padding 1), LayerNorm2d.
type neck struct {
	conv0 nn.Linear // the 1x1 conv weight (P, C, 1, 1) viewed as (P, C)
	ln1   layerNorm2d
	conv2 nn.Conv2d
	ln3   layerNorm2d
}

func newNeck(p *nn.Params, dim, out int) neck {
	return neck{
		conv0: nn.Linear{Weight: p.Weight("0.weight", out, dim, 1, 1).View(out, dim)},
		ln1:   newLayerNorm2d(p.Sub("1"), out),
		conv2: nn.NewConv2dNoBias(p.Sub("2"), out, out, 3, 1, 1),
		ln3:   newLayerNorm2d(p.Sub("3"), out),
	}
}

// forward is the neck on the blocks' NHWC output: (1, E, E, C) ->
// (1, P, E, E). The 1x1 conv and the first LayerNorm2d act on each pixel
// alone, so they run in NHWC (a Linear and a LayerNorm over the last
// axis) before the switch to NCHW.
func (n neck) forward(g *nn.Graph, x *nn.Node) *nn.Node {
	h := n.conv0.Forward(g, x)          // (1, E, E, P)
	h = n.ln1.forwardChannelsLast(g, h) // over P
	h = g.Permute(h, 0, 3, 1, 2)        // (1, P, E, E)
	h = n.conv2.Forward(g, h)           // (1, P, E, E)
	return n.ln3.forward(g, h)
}
