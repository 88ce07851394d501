package sam

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/nn"
	"github.com/mam-go/mam-go/weights"
)

func TestDensePE(t *testing.T) {
	pe := tinyPromptEncoder(t)
	for _, img := range decImages {
		t.Run(img, func(t *testing.T) {
			got := pe.DensePE()
			testutil.Check(t, "dense_pe", got.Data, got.Shape, testutil.NPY(t, testutil.Golden("tiny", img, "dense_pe.npy")), decAbsTol, false)
		})
	}
}

func TestPromptEncoderGolden(t *testing.T) {
	pe := tinyPromptEncoder(t)
	forEachDecCase(t, func(t *testing.T, r decCaseRun) {
		pts, box := r.c.resizedPrompt()
		sparse, dns, err := pe.Forward(context.Background(), pts, box, r.maskInput(t))
		r.check(t, err, golden{"sparse", sparse, decRelTol, true}, golden{"dense", dns, decRelTol, true})
	})
}

// TestPromptEncoderTokens checks the token layout: padding only without a
// box, labels picking their embeddings, and the mask-only prompt.
func TestPromptEncoderTokens(t *testing.T) {
	pe := tinyPromptEncoder(t)
	dim := pe.cfg.PromptDim
	box := &Box{10, 20, 100, 120}
	for _, tc := range []struct {
		name   string
		points []Point
		box    *Box
		want   []string // expected embedding kind of each token
	}{
		{"one point", []Point{{50, 60, 1}}, nil, []string{"pos", "pad"}},
		{"neg and pos", []Point{{50, 60, 0}, {70, 80, 1}}, nil, []string{"neg", "pos", "pad"}},
		{"box", nil, box, []string{"tl", "br"}},
		{"point and box", []Point{{50, 60, 0}}, box, []string{"neg", "tl", "br"}},
		{"explicit padding", []Point{{50, 60, -1}}, box, []string{"pad", "tl", "br"}},
		{"mask only", nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sparse, _, err := pe.Forward(context.Background(), tc.points, tc.box, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(tc.want) == 0 {
				if sparse != nil {
					t.Fatalf("sparse %v, want nil", sparse.Shape)
				}
				return
			}
			if want := []int{1, len(tc.want), dim}; !slices.Equal(sparse.Shape, want) {
				t.Fatalf("sparse shape %v, want %v", sparse.Shape, want)
			}
			s := sparse.Data
			coords := []Point{}
			for _, p := range tc.points {
				coords = append(coords, p)
			}
			if tc.box == nil && len(tc.points) > 0 {
				coords = append(coords, Point{})
			}
			if tc.box != nil {
				coords = append(coords, Point{X: tc.box.X0, Y: tc.box.Y0}, Point{X: tc.box.X1, Y: tc.box.Y1})
			}
			for i, kind := range tc.want {
				row := s[i*dim : (i+1)*dim]
				want := make([]float32, dim)
				var add []float32
				switch kind {
				case "pad":
					copy(want, pe.notAPoint)
				case "neg":
					add = pe.pointEmbeddings[0]
				case "pos":
					add = pe.pointEmbeddings[1]
				case "tl":
					add = pe.pointEmbeddings[2]
				case "br":
					add = pe.pointEmbeddings[3]
				}
				if add != nil {
					pe.peLayer.forwardWithCoords(want, float32(coords[i].X)+0.5, float32(coords[i].Y)+0.5, pe.cfg.ImageSize)
					addTo(want, add)
				}
				for c := range want {
					if row[c] != want[c] {
						t.Fatalf("token %d (%s) channel %d: got %g want %g", i, kind, c, row[c], want[c])
					}
				}
			}
		})
	}
}

func TestPromptEncoderErrors(t *testing.T) {
	pe := tinyPromptEncoder(t)
	side := 4 * pe.cfg.EmbedSize()
	nan := math.NaN()
	for _, tc := range []struct {
		name   string
		points []Point
		box    *Box
		mask   *nn.Tensor
		want   string
	}{
		{"nan point", []Point{{nan, 3, 1}}, nil, nil, "not finite"},
		{"inf point", []Point{{3, math.Inf(1), 1}}, nil, nil, "not finite"},
		{"bad label", []Point{{3, 3, 2}}, nil, nil, "label 2"},
		{"nan box", nil, &Box{0, 0, nan, 5}, nil, "not finite"},
		{"mask too small", []Point{{3, 3, 1}}, nil, nn.NewTensor(nil, 1, 1, side/2, side/2), "mask prompt has shape"},
		{"mask 3-d", []Point{{3, 3, 1}}, nil, nn.NewTensor(nil, 1, side, side), "mask prompt has shape"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := pe.Forward(context.Background(), tc.points, tc.box, tc.mask)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestNewPromptEncoderErrors(t *testing.T) {
	s := tinySAMStore(t)
	wrong := Tiny()
	wrong.PromptDim = 64
	if _, err := NewPromptEncoder(s.Sub("prompt_encoder"), wrong); !errors.Is(err, weights.ErrShape) {
		t.Fatalf("width 64 on a width-32 checkpoint: got %v, want a shape error", err)
	}
	if _, err := NewPromptEncoder(s.Sub("nothing"), Tiny()); !errors.Is(err, weights.ErrMissing) {
		t.Fatalf("empty store: got %v, want a missing-tensor error", err)
	}
}
