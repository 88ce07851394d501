// Package gdino is GroundingDINO in Go: an open-vocabulary object detector
// that turns an image and a caption ("the dog on the left", "cat . dog .")
// into scored boxes with the phrase each box matched. Matting Anything uses
// it for text prompts: its best box becomes SAM's box prompt.
//
// The model is the official Swin-T OGC configuration (and Swin-B): a Swin
// Transformer image backbone, a BERT text encoder, a feature enhancer of
// deformable self-attention, text self-attention and bi-directional
// image-text fusion, language-guided query selection and a deformable
// decoder with box refinement. Every stage is checked against the official
// PyTorch code; one Go file per official module (swin_transformer.go,
// bertwarper.go, ms_deform_attn.go, fuse_modules.go, transformer.go, ...).
// Released checkpoints (groundingdino_swint_ogc.pth) load as published,
// with the bert-base-uncased vocab.txt.
package gdino
