package server

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/draw"
	_ "image/gif" // decoders for image.Decode
	_ "image/jpeg"
	_ "image/png"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
)

// maxFieldBytes bounds a form field other than the file.
const maxFieldBytes = 64 << 10

// upload is a request's image file and its other form fields.
type upload struct {
	data   []byte
	fields map[string]string
}

// readUpload reads an image sent as multipart/form-data (the file in the
// field "file", or "image"; other fields kept) or as the raw body (any
// other content type). The body is bounded by limit bytes (413 beyond).
func (s *Server) readUpload(w http.ResponseWriter, r *http.Request, limit int64) (*upload, error) {
	// The fields of a multipart request take a little room beyond the file.
	r.Body = http.MaxBytesReader(w, r.Body, limit+maxFieldBytes*4)
	ct := r.Header.Get("Content-Type")
	mt, params, _ := mime.ParseMediaType(ct)
	up := &upload{fields: map[string]string{}}
	if mt != "multipart/form-data" {
		if strings.HasPrefix(mt, "application/json") || strings.HasPrefix(mt, "application/x-www-form-urlencoded") {
			return nil, errorf(http.StatusUnsupportedMediaType, "send the image as multipart/form-data (field \"file\") or as the raw body, not %s", mt)
		}
		data, err := readLimited(r.Body, limit)
		if err != nil {
			return nil, err
		}
		up.data = data
	} else {
		if params["boundary"] == "" {
			return nil, errorf(http.StatusBadRequest, "multipart/form-data without a boundary")
		}
		mr := multipart.NewReader(r.Body, params["boundary"])
		for parts := 0; ; parts++ {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, bodyError(err, "reading the multipart body")
			}
			if parts >= 32 {
				return nil, errorf(http.StatusBadRequest, "too many form fields")
			}
			name := p.FormName()
			switch {
			case name == "file" || (name == "image" && up.data == nil):
				if up.data != nil {
					return nil, errorf(http.StatusBadRequest, "more than one file in the form")
				}
				if up.data, err = readLimited(p, limit); err != nil {
					return nil, err
				}
			default:
				v, err := io.ReadAll(io.LimitReader(p, maxFieldBytes+1))
				if err != nil {
					return nil, bodyError(err, "reading form field "+name)
				}
				if len(v) > maxFieldBytes {
					return nil, errorf(http.StatusRequestEntityTooLarge, "form field %q is over %d bytes", name, maxFieldBytes)
				}
				if _, dup := up.fields[name]; !dup {
					up.fields[name] = string(v)
				}
			}
			p.Close()
		}
		if up.data == nil {
			return nil, errorf(http.StatusBadRequest, "no image: send it in the form field \"file\"")
		}
	}
	if len(up.data) == 0 {
		return nil, errorf(http.StatusBadRequest, "empty image file")
	}
	return up, nil
}

// readLimited reads r whole, up to limit bytes (413 beyond).
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, limit+1))
	if err != nil {
		return nil, bodyError(err, "reading the image")
	}
	if n > limit {
		return nil, errorf(http.StatusRequestEntityTooLarge, "the image file is over the server's limit of %d bytes", limit)
	}
	return buf.Bytes(), nil
}

// bodyError classifies an error reading a request body.
func bodyError(err error, what string) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errorf(http.StatusRequestEntityTooLarge, "the request body is over the server's limit of %d bytes", mbe.Limit)
	}
	return errorf(http.StatusBadRequest, "%s: %v", what, err)
}

// checkImage reads the image's header: its format must be known and its
// pixels within the limit, before anything is decoded.
func (s *Server) checkImage(data []byte) (image.Config, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		if errors.Is(err, image.ErrFormat) {
			return cfg, errorf(http.StatusUnsupportedMediaType, "not an image this server reads (PNG, JPEG or GIF)")
		}
		return cfg, errorf(http.StatusBadRequest, "bad %s image: %v", format, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return cfg, errorf(http.StatusBadRequest, "the %s image is %dx%d", format, cfg.Width, cfg.Height)
	}
	if px := int64(cfg.Width) * int64(cfg.Height); px > s.cfg.MaxPixels || cfg.Width > 1<<16 || cfg.Height > 1<<16 {
		return cfg, errorf(http.StatusRequestEntityTooLarge, "the image is %dx%d = %d pixels, over the server's limit of %d", cfg.Width, cfg.Height, px, s.cfg.MaxPixels)
	}
	return cfg, nil
}

// decodeImage decodes data (already checked) into NRGBA pixels.
func (s *Server) decodeImage(data []byte) (*image.NRGBA, error) {
	cfg, err := s.checkImage(data)
	if err != nil {
		return nil, err
	}
	img, format, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "bad %s image: %v", format, err)
	}
	b := img.Bounds()
	if b.Dx() <= 0 || b.Dy() <= 0 || b.Dx() > cfg.Width || b.Dy() > cfg.Height {
		return nil, errorf(http.StatusBadRequest, "the %s image decodes to %dx%d, its header says %dx%d", format, b.Dx(), b.Dy(), cfg.Width, cfg.Height)
	}
	if n, ok := img.(*image.NRGBA); ok && b.Min == (image.Point{}) {
		return n, nil
	}
	out := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(out, out.Rect, img, b.Min, draw.Src)
	return out, nil
}

// describe is the size of an image for messages.
func describe(img image.Image) string {
	b := img.Bounds()
	return fmt.Sprintf("%dx%d", b.Dx(), b.Dy())
}
