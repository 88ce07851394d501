package mam

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"reflect"
)

// Sentinel errors, found with errors.Is in the errors the package returns.
var (
	// ErrInvalidInput: a nil or zero value where a usable one is needed
	// (context, image, model, result, writer), sizes that do not agree, or
	// options out of range.
	ErrInvalidInput = errors.New("invalid input")
	// ErrImageTooLarge: an image with more pixels than the limit (see
	// DefaultMaxPixels and WithMaxPixels), found before it is decoded.
	ErrImageTooLarge = errors.New("image too large")
	// ErrImageFormat: input that is not an image in a format the package
	// reads (PNG, JPEG, GIF, WebP), or one that is damaged.
	ErrImageFormat = errors.New("unreadable image")
)

// isNil reports whether v is nil or an interface holding a nil pointer,
// map, slice, func or channel (a typed nil such as (*image.RGBA)(nil)).
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// checkContext rejects a nil context.
func checkContext(ctx context.Context) error {
	if isNil(ctx) {
		return fmt.Errorf("mam: %w: nil context", ErrInvalidInput)
	}
	return nil
}

// checkImage rejects a nil or empty image and one of the standard library's
// types whose pixel buffer is shorter than its bounds say (At would panic).
func checkImage(img image.Image) error {
	if isNil(img) {
		return fmt.Errorf("mam: %w: nil image", ErrInvalidInput)
	}
	b := img.Bounds()
	if b.Dx() <= 0 || b.Dy() <= 0 {
		return fmt.Errorf("mam: %w: image is %dx%d", ErrInvalidInput, b.Dx(), b.Dy())
	}
	if !pixBufferFits(img) {
		return fmt.Errorf("mam: %w: image's pixel buffer does not cover its %dx%d bounds", ErrInvalidInput, b.Dx(), b.Dy())
	}
	return nil
}

// pixBufferFits checks the standard image types' Pix/Stride against their
// bounds; other types are trusted (a panic in their At is recovered where
// pixels are read).
func pixBufferFits(img image.Image) bool {
	fits := func(pix, stride, bpp int, r image.Rectangle) bool {
		if stride < r.Dx()*bpp {
			return false
		}
		return pix >= (r.Dy()-1)*stride+r.Dx()*bpp
	}
	switch m := img.(type) {
	case *RGB:
		return m.W > 0 && m.H > 0 && m.W <= math.MaxInt32/m.H && len(m.Pix) == 3*m.W*m.H
	case *image.RGBA:
		return fits(len(m.Pix), m.Stride, 4, m.Rect)
	case *image.NRGBA:
		return fits(len(m.Pix), m.Stride, 4, m.Rect)
	case *image.RGBA64:
		return fits(len(m.Pix), m.Stride, 8, m.Rect)
	case *image.NRGBA64:
		return fits(len(m.Pix), m.Stride, 8, m.Rect)
	case *image.Gray:
		return fits(len(m.Pix), m.Stride, 1, m.Rect)
	case *image.Gray16:
		return fits(len(m.Pix), m.Stride, 2, m.Rect)
	case *image.Alpha:
		return fits(len(m.Pix), m.Stride, 1, m.Rect)
	case *image.Alpha16:
		return fits(len(m.Pix), m.Stride, 2, m.Rect)
	case *image.CMYK:
		return fits(len(m.Pix), m.Stride, 4, m.Rect)
	case *image.Paletted:
		return fits(len(m.Pix), m.Stride, 1, m.Rect) && len(m.Palette) > 0
	case *image.YCbCr:
		if !fits(len(m.Y), m.YStride, 1, m.Rect) {
			return false
		}
		last := m.COffset(m.Rect.Max.X-1, m.Rect.Max.Y-1)
		first := m.COffset(m.Rect.Min.X, m.Rect.Min.Y)
		return first >= 0 && last < len(m.Cb) && last < len(m.Cr) && m.CStride > 0
	case *image.NYCbCrA:
		if !fits(len(m.A), m.AStride, 1, m.Rect) || !fits(len(m.Y), m.YStride, 1, m.Rect) {
			return false
		}
		last := m.COffset(m.Rect.Max.X-1, m.Rect.Max.Y-1)
		return last < len(m.Cb) && last < len(m.Cr) && m.CStride > 0
	}
	return true
}
