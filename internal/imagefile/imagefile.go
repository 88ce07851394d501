// Package imagefile reads image files for the example commands.
package imagefile

import (
	"fmt"
	"image"
	_ "image/gif"  // decode GIF
	_ "image/jpeg" // decode JPEG
	_ "image/png"  // decode PNG
	"os"
)

// Read decodes the PNG, JPEG or GIF image at path.
func Read(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}
