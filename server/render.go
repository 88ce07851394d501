package server

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"slices"
	"sync"
)

// pngEncoder favours speed: the outputs are sent once, over a network.
var pngEncoder = &png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &pngPool{}}

type pngPool struct{ p sync.Pool }

func (p *pngPool) Get() *png.EncoderBuffer {
	b, _ := p.p.Get().(*png.EncoderBuffer)
	return b
}
func (p *pngPool) Put(b *png.EncoderBuffer) { p.p.Put(b) }

// encodePNG encodes img.
func encodePNG(img image.Image) ([]byte, error) {
	var buf bytes.Buffer
	if err := pngEncoder.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encoding PNG: %w", err)
	}
	return buf.Bytes(), nil
}

// renderSpec says what to draw from a result.
type renderSpec struct {
	kind string     // one of outputKinds
	bg   color.RGBA // composite background
}

// parseRender checks an output kind and its background colour.
func parseRender(kind, background string) (renderSpec, error) {
	if kind == "" {
		kind = "alpha"
	}
	if !slices.Contains(outputKinds, kind) {
		return renderSpec{}, errorf(http.StatusBadRequest, "output %q: want one of %v", kind, outputKinds)
	}
	rs := renderSpec{kind: kind, bg: color.RGBA{255, 255, 255, 255}}
	if kind == "greenscreen" {
		rs.bg = color.RGBA{0, 255, 0, 255}
	}
	if background != "" {
		if kind != "composite" {
			return renderSpec{}, errorf(http.StatusBadRequest, "background %q is for output composite, not %s", background, kind)
		}
		c, err := parseColor(background)
		if err != nil {
			return renderSpec{}, errorf(http.StatusBadRequest, "background %q: want a colour name (green, blue, white, black, red) or #rrggbb", background)
		}
		rs.bg = c
	}
	return rs, nil
}

// render draws one output of r on img.
func render(r *result, img *image.NRGBA, rs renderSpec) (image.Image, error) {
	switch rs.kind {
	case "alpha":
		return alphaImage(r), nil
	case "alpha16":
		return alpha16Image(r), nil
	case "mask":
		return maskImage(r), nil
	case "cutout":
		return cutoutImage(r, img)
	case "composite", "greenscreen":
		return compositeImage(r, img, rs.bg)
	}
	return nil, fmt.Errorf("unknown output %q", rs.kind)
}

// renderPNG draws one output and encodes it.
func renderPNG(r *result, img *image.NRGBA, rs renderSpec) ([]byte, error) {
	out, err := render(r, img, rs)
	if err != nil {
		return nil, err
	}
	return encodePNG(out)
}

// over puts the cutout of img (straight alpha from the matte) over a
// colour with alpha, Porter-Duff "over": what rembg's bgc gives.
func over(r *result, img *image.NRGBA, bg color.NRGBA) *image.NRGBA {
	w, h := r.width(), r.height()
	out := image.NewNRGBA(image.Rect(0, 0, w, h))
	alpha := r.alpha()
	ba := float64(bg.A) / 255
	bc := [3]float64{float64(bg.R), float64(bg.G), float64(bg.B)}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			a := float64(alpha[y*w+x])
			if !(a > 0) {
				a = 0
			} else if a > 1 {
				a = 1
			}
			i := img.PixOffset(x, y)
			o := out.PixOffset(x, y)
			oa := a + ba*(1-a)
			if oa <= 0 {
				continue
			}
			for c := 0; c < 3; c++ {
				v := (float64(img.Pix[i+c])*a + bc[c]*ba*(1-a)) / oa
				out.Pix[o+c] = uint8(v + 0.5)
			}
			out.Pix[o+3] = uint8(oa*255 + 0.5)
		}
	}
	return out
}
