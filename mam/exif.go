package mam

import (
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
)

// jpegOrientation returns the EXIF orientation (1 to 8) of the JPEG whose
// first bytes are b, or 1 when there is none or it cannot be read. Only the
// markers before the first scan are looked at; every offset is checked.
func jpegOrientation(b []byte) int {
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return 1
	}
	i := 2
	for i+4 <= len(b) {
		if b[i] != 0xFF {
			return 1
		}
		marker := b[i+1]
		if marker == 0xFF { // fill byte
			i++
			continue
		}
		if marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01 {
			i += 2
			continue
		}
		if marker == 0xDA || marker == 0xD9 { // start of scan, end of image
			return 1
		}
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if n < 2 || i+2+n > len(b) {
			return 1
		}
		seg := b[i+4 : i+2+n]
		if marker == 0xE1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			if o := tiffOrientation(seg[6:]); o != 0 {
				return o
			}
		}
		i += 2 + n
	}
	return 1
}

// tiffOrientation reads tag 0x0112 of IFD0 of an EXIF TIFF block; 0 when
// absent or out of range.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 0
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 0
	}
	if bo.Uint16(t[2:]) != 42 {
		return 0
	}
	off := int64(bo.Uint32(t[4:]))
	if off < 8 || off+2 > int64(len(t)) {
		return 0
	}
	n := int64(bo.Uint16(t[off:]))
	for k := int64(0); k < n; k++ {
		e := off + 2 + 12*k
		if e+12 > int64(len(t)) {
			return 0
		}
		if bo.Uint16(t[e:]) != 0x0112 {
			continue
		}
		typ, count := bo.Uint16(t[e+2:]), bo.Uint32(t[e+4:])
		if typ != 3 || count != 1 { // one SHORT, stored in the entry
			return 0
		}
		if v := int(bo.Uint16(t[e+8:])); v >= 1 && v <= 8 {
			return v
		}
		return 0
	}
	return 0
}

// Orient returns img as a viewer shows it for EXIF orientation o (1 to 8):
// mirrored (2, 4), rotated by 180 degrees (3), transposed (5), rotated 90
// degrees clockwise (6), transversed (7) or rotated 90 degrees
// anticlockwise (8). Orientation 1 returns img itself. The result is an
// *image.Gray for grey images and an *image.NRGBA otherwise.
func Orient(img image.Image, o int) (image.Image, error) {
	if o < 1 || o > 8 {
		return nil, fmt.Errorf("mam: %w: EXIF orientation %d: want 1 to 8", ErrInvalidInput, o)
	}
	if err := checkImage(img); err != nil {
		return nil, err
	}
	if o == 1 {
		return img, nil
	}
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	dw, dh := sw, sh
	if o >= 5 {
		dw, dh = sh, sw
	}
	// src maps a displayed pixel to the stored one.
	src := func(x, y int) (int, int) {
		switch o {
		case 2:
			return sw - 1 - x, y
		case 3:
			return sw - 1 - x, sh - 1 - y
		case 4:
			return x, sh - 1 - y
		case 5:
			return y, x
		case 6:
			return y, sh - 1 - x
		case 7:
			return sw - 1 - y, sh - 1 - x
		}
		return sw - 1 - y, x // 8
	}
	r := image.Rect(0, 0, dw, dh)
	if g, ok := img.(*image.Gray); ok {
		out := image.NewGray(r)
		err := safeParallelRange(dh, func(lo, hi int) {
			for y := lo; y < hi; y++ {
				row := out.Pix[y*out.Stride:]
				for x := 0; x < dw; x++ {
					sx, sy := src(x, y)
					row[x] = g.Pix[g.PixOffset(b.Min.X+sx, b.Min.Y+sy)]
				}
			}
		})
		return out, err
	}
	out := image.NewNRGBA(r)
	var at func(x, y int) color.NRGBA
	switch m := img.(type) {
	case *image.NRGBA:
		at = func(x, y int) color.NRGBA { return m.NRGBAAt(x, y) }
	case *image.YCbCr:
		at = func(x, y int) color.NRGBA {
			r, g, bb, _ := m.YCbCrAt(x, y).RGBA()
			return color.NRGBA{uint8(r >> 8), uint8(g >> 8), uint8(bb >> 8), 0xff}
		}
	default:
		at = func(x, y int) color.NRGBA { return color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA) }
	}
	err := safeParallelRange(dh, func(lo, hi int) {
		for y := lo; y < hi; y++ {
			row := out.Pix[y*out.Stride:]
			for x := 0; x < dw; x++ {
				sx, sy := src(x, y)
				c := at(b.Min.X+sx, b.Min.Y+sy)
				row[4*x], row[4*x+1], row[4*x+2], row[4*x+3] = c.R, c.G, c.B, c.A
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
