package mam

import (
	"slices"

	"github.com/mam-go/mam-go/gdino"
	"github.com/mam-go/mam-go/nn"
)

// Result is the matte of one prompt.
type Result struct {
	// Alpha is the refined matte, Width*Height values in [0, 1], row-major.
	Alpha         []float32
	Width, Height int
	// Mask is the SAM mask (the best-IoU multimask output), 0 or 1 per pixel.
	Mask []uint8
	// IoU is SAM's predicted IoU of Mask.
	IoU float32
	// Mode is the refinement that made Alpha.
	Mode Mode

	// Scores holds SAM's predicted IoU of each of its masks (3, or 1 with
	// Prompt.SingleMask), Index which of them Mask is (-1 for MatteMask),
	// and LowRes their low-res logits (1, K, 4E, 4E).
	Scores []float32
	Index  int
	LowRes *nn.Tensor

	// Detection is the GroundingDINO detection whose box was SAM's prompt,
	// for a text prompt; nil otherwise.
	Detection *gdino.Detection
}

// MaskPrompt returns the low-res logits of the mask taken (1, 1, 4E, 4E),
// ready to be the Mask of the next Prompt on the same Session (iterative
// refinement: add a point, keep the mask), or nil for a MatteMask result.
func (r *Result) MaskPrompt() *nn.Tensor {
	if r.LowRes == nil || r.Index < 0 || len(r.LowRes.Shape) != 4 || r.Index >= r.LowRes.Shape[1] {
		return nil
	}
	s := r.LowRes.Shape
	n := s[2] * s[3]
	return nn.NewTensor(slices.Clone(r.LowRes.Data[r.Index*n:(r.Index+1)*n]), 1, 1, s[2], s[3])
}
