package testutil

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/jpeg"
)

// JPEGWithOrientation encodes img as a JPEG (quality 95) carrying an EXIF
// block whose orientation tag is o; o == 0 writes no EXIF block.
func JPEGWithOrientation(img image.Image, o int) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95}); err != nil {
		panic(err)
	}
	b := buf.Bytes()
	if o == 0 {
		return b
	}
	// TIFF, little-endian: header, IFD0 with one entry (0x0112, SHORT, 1).
	tiff := []byte("II*\x00\x08\x00\x00\x00")
	tiff = binary.LittleEndian.AppendUint16(tiff, 1)
	tiff = binary.LittleEndian.AppendUint16(tiff, 0x0112)
	tiff = binary.LittleEndian.AppendUint16(tiff, 3)
	tiff = binary.LittleEndian.AppendUint32(tiff, 1)
	tiff = binary.LittleEndian.AppendUint16(tiff, uint16(o))
	tiff = append(tiff, 0, 0, 0, 0, 0, 0) // value padding, next IFD offset
	payload := append([]byte("Exif\x00\x00"), tiff...)
	app1 := []byte{0xFF, 0xE1}
	app1 = binary.BigEndian.AppendUint16(app1, uint16(2+len(payload)))
	app1 = append(app1, payload...)
	out := append([]byte{}, b[:2]...) // SOI
	out = append(out, app1...)
	return append(out, b[2:]...)
}
