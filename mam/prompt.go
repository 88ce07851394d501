package mam

import (
	"fmt"
	"math"
)

// Point is a click prompt in original-image pixel coordinates. Label 1
// marks foreground, 0 background.
type Point struct {
	X, Y  float64
	Label int
}

// Box is a box prompt (x0, y0) - (x1, y1) in original-image pixels.
type Box struct {
	X0, Y0, X1, Y1 float64
}

// Prompt says which object to matte: any number of points, an optional box,
// or both.
type Prompt struct {
	Points []Point
	Box    *Box
}

// Mode selects the iterative refinement of MODEL.md section 6.
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

// Validate checks that the prompt names something: at least one point or a
// box, finite coordinates, labels 0 or 1, a box that is not reversed
// (x0 <= x1, y0 <= y1). Its errors wrap ErrPrompt. ValidateFor also checks
// the prompt against the image.
func (p Prompt) Validate() error {
	if len(p.Points) == 0 && p.Box == nil {
		return fmt.Errorf("mam: %w: empty prompt: give a box or at least one point", ErrPrompt)
	}
	for i, pt := range p.Points {
		if !finite(pt.X) || !finite(pt.Y) {
			return fmt.Errorf("mam: %w: point %d (%v, %v) is not finite", ErrPrompt, i, pt.X, pt.Y)
		}
		if pt.Label != 0 && pt.Label != 1 {
			return fmt.Errorf("mam: %w: point %d has label %d, want 0 (background) or 1 (foreground)", ErrPrompt, i, pt.Label)
		}
	}
	if b := p.Box; b != nil {
		if !finite(b.X0) || !finite(b.Y0) || !finite(b.X1) || !finite(b.Y1) {
			return fmt.Errorf("mam: %w: box %v is not finite", ErrPrompt, *b)
		}
		if b.X1 < b.X0 || b.Y1 < b.Y0 {
			return fmt.Errorf("mam: %w: box (%g, %g)-(%g, %g) is reversed: want x0 <= x1 and y0 <= y1", ErrPrompt, b.X0, b.Y0, b.X1, b.Y1)
		}
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
