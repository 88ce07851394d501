package mam

import (
	"fmt"

	"github.com/mam-go/mam-go/sam"
)

// Prompt says which object to matte: points, a box, a low-res mask from an
// earlier Result (Result.MaskPrompt, for iterative refinement), or any mix,
// in original-image pixels. It is sam.Prompt: the matting pipeline takes
// the best-IoU mask of SAM's three unless SingleMask is set.
type Prompt = sam.Prompt

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
