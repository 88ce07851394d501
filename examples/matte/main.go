// Command matte cuts an object out of a photo with Matting Anything.
//
//	go run ./examples/matte -sam sam_vit_b_01ec64.pth -mam mam_vitb.pth \
//	    -image in.jpg -box x0,y0,x1,y1 -o alpha.png [-cutout out.png] [-composite green|#rrggbb|bg.jpg]
//
// Prompts: -box x0,y0,x1,y1 and/or -point x,y[,label] (repeatable; label 1
// foreground, 0 background). -mode postprocess|maskguide|plain selects the
// refinement. -dump DIR writes every stage as .npy under the names of the
// golden reference data. -download fetches the released ViT-B checkpoints
// into the user cache directory first. Stage times go to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"image"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/mam-go/mam-go/internal/imagefile"
	"github.com/mam-go/mam-go/mam"
	"github.com/mam-go/mam-go/weights"
)

type pointList []mam.Point

func (p *pointList) String() string { return fmt.Sprint(*p) }
func (p *pointList) Set(s string) error {
	v, err := floats(s)
	if err != nil || (len(v) != 2 && len(v) != 3) {
		return fmt.Errorf("want x,y or x,y,label, got %q", s)
	}
	pt := mam.Point{X: v[0], Y: v[1], Label: 1}
	if len(v) == 3 {
		if v[2] != 0 && v[2] != 1 {
			return fmt.Errorf("label %v: want 0 (background) or 1 (foreground)", v[2])
		}
		pt.Label = int(v[2])
	}
	*p = append(*p, pt)
	return nil
}

func floats(s string) ([]float64, error) {
	parts := strings.Split(s, ",")
	out := make([]float64, len(parts))
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func main() {
	// A soft heap limit keeps the peak resident memory of a ViT-B run near
	// 1.3 GB (weights included) instead of letting garbage pile up between
	// collections; GOMEMLIMIT overrides it.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(1200 << 20)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "matte:", err)
		os.Exit(1)
	}
}

// run is the command, with its arguments and where it reports.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("matte", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		samPath   = fs.String("sam", "", "SAM checkpoint (.pth, .npz or a directory of .npy)")
		mamPath   = fs.String("mam", "", "MAM checkpoint (.pth, .npz or a directory of .npy)")
		imagePath = fs.String("image", "", "input image (PNG, JPEG or GIF)")
		boxFlag   = fs.String("box", "", "box prompt x0,y0,x1,y1 in pixels")
		modeFlag  = fs.String("mode", "postprocess", "refinement: postprocess (single object), maskguide (several instances) or plain")
		bits      = fs.Int("bits", 8, "alpha PNG depth: 8 or 16")
		out       = fs.String("o", "alpha.png", "output alpha matte PNG")
		cutout    = fs.String("cutout", "", "also write the object with a transparent background (RGBA PNG)")
		composite = fs.String("composite", "", "also write a composite over a colour (green, #rrggbb) or an image file")
		download  = fs.Bool("download", false, "download the released SAM ViT-B and MAM ViT-B checkpoints into the cache directory")
		compOut   = fs.String("composite-out", "composite.png", "where -composite writes")
		maskOut   = fs.String("mask", "", "also write SAM's mask as a PNG")
		dumpDir   = fs.String("dump", "", "write every stage as .npy into this directory")
		points    pointList
		preset    = fs.String("preset", "", "force the SAM configuration (vit_b, vit_l, vit_h, tiny)")
		samURL    = fs.String("sam-url", mam.SAMViTB.URL, "where -download gets SAM from")
		mamURL    = fs.String("mam-url", mam.MAMViTB.URL, "where -download gets MAM from")
	)
	fs.Var(&points, "point", "point prompt x,y[,label] (repeatable; label 1 = foreground, 0 = background)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	if *download {
		dir, err := mam.CacheDir()
		if err != nil {
			return err
		}
		sc, mc := mam.SAMViTB, mam.MAMViTB
		sc.URL, mc.URL = *samURL, *mamURL
		if *samPath == "" {
			if *samPath, err = mam.Download(ctx, sc, dir, mam.DownloadOptions{Progress: stderr}); err != nil {
				return err
			}
		}
		if *mamPath == "" {
			if *mamPath, err = mam.Download(ctx, mc, dir, mam.DownloadOptions{Progress: stderr}); err != nil {
				return err
			}
		}
		if *imagePath == "" {
			fmt.Fprintf(stderr, "checkpoints in %s\n", dir)
			return nil
		}
	}
	if *samPath == "" || *mamPath == "" || *imagePath == "" {
		fs.Usage()
		return errors.New("-sam, -mam and -image are required (or -download)")
	}
	mode, err := mam.ParseMode(*modeFlag)
	if err != nil {
		return err
	}
	var prompt mam.Prompt
	prompt.Points = points
	if *boxFlag != "" {
		v, err := floats(*boxFlag)
		if err != nil || len(v) != 4 {
			return fmt.Errorf("-box %q: want x0,y0,x1,y1", *boxFlag)
		}
		prompt.Box = &mam.Box{X0: v[0], Y0: v[1], X1: v[2], Y1: v[3]}
	}
	if err := prompt.Validate(); err != nil {
		return err
	}

	t0 := time.Now()
	var opts []mam.Option
	if *preset != "" {
		opts = append(opts, mam.WithPreset(*preset))
	}
	model, err := mam.Load(ctx, *samPath, *mamPath, opts...)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "load        %8.3fs (SAM %s)\n", time.Since(t0).Seconds(), model.SAM.Name)

	img, err := imagefile.Read(*imagePath)
	if err != nil {
		return err
	}
	t0 = time.Now()
	sess, err := model.NewSession(ctx, img)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "encoder     %8.3fs\n", time.Since(t0).Seconds())

	var mopts []mam.MatteOption
	mopts = append(mopts, mam.WithMode(mode))
	if *dumpDir != "" {
		if err := os.MkdirAll(*dumpDir, 0o755); err != nil {
			return err
		}
		var derr error
		mopts = append(mopts, mam.WithDump(func(name string, shape []int, data []float32) {
			if derr == nil {
				derr = writeNPY(filepath.Join(*dumpDir, name+".npy"), shape, data)
			}
		}))
		defer func() {
			if derr != nil {
				fmt.Fprintln(stderr, "matte: dump:", derr)
			}
		}()
	}
	t0 = time.Now()
	res, err := sess.Matte(ctx, prompt, mopts...)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "decode+m2m  %8.3fs (IoU %.3f, mode %s)\n", time.Since(t0).Seconds(), res.IoU, res.Mode)

	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := res.WriteAlphaPNG(f, *bits); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s\n", *out)
	if *cutout != "" {
		c, err := res.Cutout(img)
		if err != nil {
			return err
		}
		if err := mam.SavePNG(*cutout, c); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s\n", *cutout)
	}
	if *maskOut != "" {
		if err := mam.SavePNG(*maskOut, res.MaskImage()); err != nil {
			return err
		}
	}
	if *composite != "" {
		var comp image.Image
		if col, cerr := mam.ParseColor(*composite); cerr == nil {
			comp, err = res.Composite(img, col)
		} else {
			bg, berr := imagefile.Read(*composite)
			if berr != nil {
				return fmt.Errorf("-composite %q is neither a colour nor a readable image: %v", *composite, berr)
			}
			comp, err = res.CompositeOver(img, bg)
		}
		if err != nil {
			return err
		}
		if err := mam.SavePNG(*compOut, comp); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s\n", *compOut)
	}
	return nil
}

func writeNPY(path string, shape []int, data []float32) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := weights.WriteNPY(f, &weights.Tensor{Shape: shape, Stored: weights.Float32, F32: data}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
