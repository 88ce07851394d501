// Package sam implements Segment Anything (SAM) inference in pure Go, as
// used by Matting Anything: the ViT image encoder, the prompt encoder, the
// mask decoder and the interactive predictor, numerically following the
// reference PyTorch code (segment_anything/modeling/*.py, predictor.py).
//
// A Model is built from a SAM checkpoint's tensors with New (Config
// presets ViTB, ViTL, ViTH, or DetectConfig). A Predictor runs the image
// encoder once per image (SetImage) and then predicts masks for any number
// of prompts (Predict): points, a box and a low-res mask, given in original
// image pixels:
//
//	m, err := sam.New(store, sam.ViTB())
//	p := sam.NewPredictor(m)
//	err = p.SetImage(ctx, img)
//	pred, err := p.Predict(ctx, sam.Prompt{
//		Points: []sam.Point{{X: 120, Y: 80, Label: 1}},
//	})
//	best := pred.Binary(pred.Best()) // H*W booleans
//
// Each PyTorch module is in the Go file of the same name: image_encoder.go
// (ImageEncoderViT, Block, Attention, PatchEmbed), prompt_encoder.go,
// mask_decoder.go (MaskDecoder, MLP), transformer.go (TwoWayTransformer),
// common.go (MLPBlock, LayerNorm2d), sam.go, predictor.go and
// transforms.go (ResizeLongestSide); the mask decoder's fused kernels are
// in fused.go. A module is a struct built from its parameters (nn.Params,
// so RandomWeights draws a random model through the same constructors)
// with a forward method that adds it to an nn graph; weights are bound
// when a graph is built, and graphs are compiled once and run per call
// (the mask decoder keeps one per prompt token count).
//
// Shapes follow the reference, NCHW with batch 1: S is the input side
// (1024), E = S/16 the embedding side (64), D the prompt/decoder width (256).
// Tensors are nn.Tensor values. Image embeddings are (1, D, E, E), low-res
// mask logits (1, K, 4E, 4E) and masks at the original size (1, K, H, W),
// K = 3 (the reference's multimask_output, the default) or 1 with
// Prompt.SingleMask.
//
// A Model is safe for concurrent use; a Predictor is not (make one per
// goroutine: they can share a Model). Errors wrap ErrNoImage, ErrNoPrompt,
// ErrBadPrompt, ErrBadImage or ErrInput where they apply.
package sam
