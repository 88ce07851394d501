package sam

// The prompt of a prediction and its validation, shared by the Predictor,
// the PromptEncoder and package mam.

import (
	"errors"
	"fmt"
	"math"

	"github.com/mam-go/mam-go/nn"
)

// Errors wrapped by the errors of this package, for errors.Is (package mam
// wraps them too).
var (
	// ErrNoImage: Predict or an embedding getter was called before SetImage.
	ErrNoImage = errors.New("no image set: call SetImage first")
	// ErrNoPrompt: a prompt with no point, no box and no mask.
	ErrNoPrompt = errors.New("no prompt: give points, a box or a mask")
	// ErrBadPrompt: a point, box or mask prompt that cannot be used.
	ErrBadPrompt = errors.New("bad prompt")
)

// Point is a point prompt. Label 1 marks foreground, 0 background and -1 a
// padding point (the reference's "not a point", for the PromptEncoder
// only). Coordinates are pixels, x to the right, y down: original image
// pixels for a Prompt, the model's input frame (the resized image) for the
// PromptEncoder.
type Point struct {
	X, Y  float64
	Label int
}

// Box is a box prompt, corners (X0, Y0) top-left and (X1, Y1)
// bottom-right, in pixels (as Point).
type Box struct {
	X0, Y0, X1, Y1 float64
}

// Prompt says what to segment: any number of points, an optional box and
// an optional mask, in original image pixels (SamPredictor.predict's
// point_coords, point_labels, box and mask_input).
type Prompt struct {
	// Points are clicks; Label 1 marks foreground, 0 background.
	Points []Point
	// Box is an optional box. Boxes partly outside the image are allowed;
	// a box with no area inside the image is an error.
	Box *Box
	// Mask is an optional low-res mask prompt: logits (1, 1, 4E, 4E)
	// ((1, 4E, 4E) and (4E, 4E) are accepted too), typically
	// Prediction.LowResMask of an earlier prediction, for iterative
	// refinement.
	Mask *nn.Tensor
	// SingleMask asks for one mask instead of the 3 disambiguating masks
	// (the reference's multimask_output=False; its default, True, is the
	// zero value here, and what the matting pipeline uses).
	SingleMask bool
}

// Validate checks what can be checked without an image: the prompt names
// something, coordinates are finite, labels are 0 or 1, the mask has the
// shape of a single mask and finite values. Its errors wrap ErrNoPrompt or
// ErrBadPrompt. Predictor.Predict also checks the prompt against the
// image (ValidateFor) and the mask against the model's size.
func (p Prompt) Validate() error {
	if len(p.Points) == 0 && p.Box == nil && p.Mask == nil {
		return fmt.Errorf("sam: prompt: %w (%w)", ErrNoPrompt, ErrBadPrompt)
	}
	err := checkPoints(p.Points, false)
	if err == nil {
		err = checkBox(p.Box)
	}
	if err == nil && p.Mask != nil {
		_, err = maskSide(p.Mask)
	}
	if err != nil {
		return fmt.Errorf("sam: prompt: %w", err)
	}
	return nil
}

// ValidateFor is Validate, then checks the prompt against a w x h image,
// which spans [0, w] x [0, h] in pixel coordinates: a point outside it, or
// a box wholly outside it, is an error (ErrBadPrompt). A box partly outside
// is kept as it is, and so is a box of no area: SAM takes them unclipped,
// as the reference does.
func (p Prompt) ValidateFor(w, h int) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if w <= 0 || h <= 0 {
		return fmt.Errorf("sam: prompt for an image of %dx%d: %w", w, h, ErrBadImage)
	}
	W, H := float64(w), float64(h)
	for i, pt := range p.Points {
		if pt.X < 0 || pt.Y < 0 || pt.X > W || pt.Y > H {
			return fmt.Errorf("sam: prompt: point %d (%g, %g) is outside the %dx%d image: %w", i, pt.X, pt.Y, w, h, ErrBadPrompt)
		}
	}
	if b := p.Box; b != nil && (b.X1 < 0 || b.Y1 < 0 || b.X0 > W || b.Y0 > H) {
		return fmt.Errorf("sam: prompt: box (%g, %g)-(%g, %g) is wholly outside the %dx%d image: %w", b.X0, b.Y0, b.X1, b.Y1, w, h, ErrBadPrompt)
	}
	return nil
}

// checkPoints checks point coordinates and labels (-1 allowed with
// padding).
func checkPoints(points []Point, padding bool) error {
	for i, pt := range points {
		if !finite(pt.X) || !finite(pt.Y) {
			return fmt.Errorf("point %d (%g, %g) is not finite: %w", i, pt.X, pt.Y, ErrBadPrompt)
		}
		if pt.Label != 0 && pt.Label != 1 && !(padding && pt.Label == -1) {
			return fmt.Errorf("point %d has label %d, want 1 (foreground) or 0 (background): %w", i, pt.Label, ErrBadPrompt)
		}
	}
	return nil
}

// checkBox checks a box's coordinates (nil is fine).
func checkBox(b *Box) error {
	if b == nil {
		return nil
	}
	if !finite(b.X0) || !finite(b.Y0) || !finite(b.X1) || !finite(b.Y1) {
		return fmt.Errorf("box %v is not finite: %w", *b, ErrBadPrompt)
	}
	if b.X1 < b.X0 || b.Y1 < b.Y0 {
		return fmt.Errorf("box (%g, %g)-(%g, %g) is reversed: want x0 <= x1 and y0 <= y1: %w", b.X0, b.Y0, b.X1, b.Y1, ErrBadPrompt)
	}
	return nil
}

// maskSide checks a mask prompt, one square plane of finite logits
// ((1, 1, n, n), (1, n, n) or (n, n)), and returns its side n.
func maskSide(m *nn.Tensor) (int, error) {
	sh := m.Shape
	ok := len(sh) >= 2 && len(sh) <= 4 && sh[len(sh)-1] == sh[len(sh)-2] && sh[len(sh)-1] > 0
	for _, d := range sh[:max(len(sh)-2, 0)] {
		ok = ok && d == 1
	}
	if !ok || len(m.Data) != sh[len(sh)-1]*sh[len(sh)-1] {
		return 0, fmt.Errorf("mask prompt has shape %v, want (1, 1, 4E, 4E) logits: %w", sh, ErrBadPrompt)
	}
	for i, v := range m.Data {
		if !finite(float64(v)) {
			return 0, fmt.Errorf("mask prompt value %d is %g: %w", i, v, ErrBadPrompt)
		}
	}
	return sh[len(sh)-1], nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
