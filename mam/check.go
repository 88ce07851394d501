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

// ValidateFor checks the prompt as Validate does and against a w x h image
// (sam.Prompt.ValidateFor: a point outside the image, or a box wholly
// outside it, is an error; a box partly outside is kept unclipped, as the
// reference does). A text prompt's box is checked when the detector has
// found it.
func (p Prompt) ValidateFor(w, h int) error {
	if err := p.Validate(); err != nil {
		return err
	}
	q := p.SAM()
	if p.Text != "" && len(q.Points) == 0 && q.Mask == nil {
		q.Points = []Point{{X: 0, Y: 0, Label: 1}} // the image size alone is checked
	}
	if err := q.ValidateFor(w, h); err != nil {
		return fmt.Errorf("mam: %w", err)
	}
	return nil
}
