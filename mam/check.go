package mam

import (
	"fmt"
)

// check reports whether m is a usable model.
func (m *Model) check() error {
	if m == nil || m.SAM == nil || m.M2M == nil || m.SAM.Encoder == nil {
		return fmt.Errorf("mam: %w: model is nil or not loaded (use Load or New)", ErrInvalidInput)
	}
	return nil
}

// check reports whether s is a usable session.
func (s *Session) check() error {
	if s == nil || s.pred == nil || !s.pred.IsImageSet() {
		return fmt.Errorf("mam: %w: session is nil or has no image (use Model.NewSession)", ErrInvalidInput)
	}
	return s.m.check()
}

// ValidateFor checks the prompt as Validate does and against a w x h image:
// a point outside the image, or a box that lies wholly outside it, is an
// error (ErrPrompt). A box that is partly outside is kept as it is: SAM
// takes it unclipped, as the reference does. The image spans [0, w] x
// [0, h] in pixel coordinates.
func (p Prompt) ValidateFor(w, h int) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if w <= 0 || h <= 0 {
		return fmt.Errorf("mam: %w: image is %dx%d", ErrInvalidInput, w, h)
	}
	W, H := float64(w), float64(h)
	for i, pt := range p.Points {
		if pt.X < 0 || pt.Y < 0 || pt.X > W || pt.Y > H {
			return fmt.Errorf("mam: %w: point %d (%g, %g) is outside the %dx%d image", ErrPrompt, i, pt.X, pt.Y, w, h)
		}
	}
	if b := p.Box; b != nil {
		if b.X1 < 0 || b.Y1 < 0 || b.X0 > W || b.Y0 > H {
			return fmt.Errorf("mam: %w: box (%g, %g)-(%g, %g) is wholly outside the %dx%d image", ErrPrompt, b.X0, b.Y0, b.X1, b.Y1, w, h)
		}
	}
	return nil
}
