package mam

import (
	"fmt"
	"strings"

	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/sam"
)

// Prompt says which object to matte: points, a box, a low-res mask from an
// earlier Result (Result.MaskPrompt, for iterative refinement), a text, or
// a mix, in original-image pixels. Its SAM part is sam.Prompt's, checked by
// sam's one validation; the matting pipeline takes the best-IoU mask of
// SAM's three unless SingleMask is set.
type Prompt struct {
	// Points are clicks; Label 1 marks foreground, 0 background.
	Points []Point
	// Box is an optional box; boxes partly outside the image are allowed.
	Box *Box
	// Mask is an optional low-res mask prompt (Result.MaskPrompt).
	Mask *nn.Tensor
	// SingleMask asks SAM for one mask instead of the best of three.
	SingleMask bool
	// Text is a caption ("the dog on the left", "cat . dog ."):
	// GroundingDINO finds the boxes it describes and the best one becomes
	// the box prompt, as Matting Anything's demo does; Points and Mask may
	// be added to correct the result, a Box may not. It needs a model
	// loaded with a detector (WithDetector, WithGroundingDINO).
	Text string
}

// SAM returns the prompt's SAM part (without Text).
func (p Prompt) SAM() sam.Prompt {
	return sam.Prompt{Points: p.Points, Box: p.Box, Mask: p.Mask, SingleMask: p.SingleMask}
}

// Validate checks what can be checked without an image (sam.Prompt's
// validation, and that a Text comes without a Box). Its errors wrap
// ErrNoPrompt or ErrBadPrompt.
func (p Prompt) Validate() error {
	if p.Text == "" {
		return p.SAM().Validate()
	}
	if p.Box != nil {
		return fmt.Errorf("mam: a prompt with a text cannot have a box too (the text gives the box): %w", ErrBadPrompt)
	}
	if strings.TrimSpace(p.Text) == "" {
		return fmt.Errorf("mam: blank text prompt: %w", ErrNoPrompt)
	}
	if len(p.Points) > 0 || p.Mask != nil {
		q := p.SAM()
		q.Box = nil
		return q.Validate()
	}
	return nil
}

// Point is a click prompt in original-image pixels. Label 1 marks
// foreground, 0 background.
type Point = sam.Point

// Box is a box prompt (X0, Y0) - (X1, Y1) in original-image pixels.
type Box = sam.Box

// Errors wrapped by the package's errors, for errors.Is. They are the sam
// package's: a prompt is validated once, by sam.Prompt.Validate and
// sam.Prompt.ValidateFor.
var (
	// ErrNoPrompt: a prompt with no point, no box and no mask.
	ErrNoPrompt = sam.ErrNoPrompt
	// ErrBadPrompt: a point, box or mask that cannot be used (not finite,
	// a label other than 0 or 1, a box with no area inside the image, a
	// mask of the wrong size).
	ErrBadPrompt = sam.ErrBadPrompt
	// ErrBadImage: an image that is nil, empty or too large.
	ErrBadImage = sam.ErrBadImage
)

// Mode selects the iterative refinement of the M2M mattes (see Refine).
type Mode string

// Refinement modes.
const (
	// PostProcess keeps os8 inside the SAM mask's bounding box and the mask
	// outside it; the reference demo's default for a single instance.
	PostProcess Mode = "postprocess"
	// MaskGuide keeps the mask and takes os8 only in a band around it; for
	// scenes with several instances.
	MaskGuide Mode = "maskguide"
	// Plain takes os8 everywhere before the os4/os1 steps.
	Plain Mode = "plain"
)

// ParseMode parses a refinement mode name.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case PostProcess, MaskGuide, Plain:
		return Mode(s), nil
	}
	return "", fmt.Errorf("mam: unknown mode %q (want postprocess, maskguide or plain)", s)
}
