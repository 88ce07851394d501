package server

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/mam-go/mam-go/internal/testutil"
)

// chromium finds a Chromium or Chrome binary ($MAM_CHROMIUM first).
func chromium() string {
	if p := os.Getenv("MAM_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// pagePoint is a prompt point as the page holds it.
type pagePoint struct {
	X, Y  float64
	Label int
}

// TestBrowser drives the page in headless Chromium: open the dog photo,
// click, right-click, drag a box, undo, switch views, download; every
// matte shown and downloaded must be the library's. It runs offline
// (every host but 127.0.0.1 resolves to nothing) within 60 s. Set
// MAM_SCREENSHOT_DIR to keep screenshots of the page.
func TestBrowser(t *testing.T) {
	bin := chromium()
	if bin == "" {
		t.Skip("no chromium binary found (apt-get install chromium, or set MAM_CHROMIUM)")
	}
	if raceEnabled {
		t.Skip("the browser test mattes 240x160 images, too slow under -race; the handler tests cover the race detector")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	m := tinyModel(t)
	_, ts := newTestServer(t, Config{})
	dogPath := testutil.Golden("tiny", "dog_240", "image.png")
	dog := testutil.Image(t, dogPath)
	dl := t.TempDir()
	shots := os.Getenv("MAM_SCREENSHOT_DIR")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1360, 860),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			status, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('status').textContent`))
			t.Fatalf("%s: %v (page status: %q)", what, err, status)
		}
	}
	shot := func(name string) {
		if shots == "" {
			return
		}
		b, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err == nil {
			err = os.WriteFile(filepath.Join(shots, name), b, 0o644)
		}
		if err != nil {
			t.Logf("screenshot %s: %v", name, err)
		}
	}
	// clientXY is where image pixel (x, y) is on the screen.
	clientXY := func(x, y float64) (float64, float64) {
		t.Helper()
		xy, err := chromedp.Run(bctx, chromedp.Evaluate[[]float64](fmt.Sprintf(`(() => {
			const r = document.getElementById('overlay').getBoundingClientRect();
			return [r.left + %v * r.width / window.mam.width, r.top + %v * r.height / window.mam.height];
		})()`, x, y)))
		must("coordinates", err)
		return xy[0], xy[1]
	}
	waitMattes := func(n int) {
		t.Helper()
		_, err := chromedp.Run(bctx, chromedp.Poll[chromedp.Void](fmt.Sprintf(`window.mam.matteCount >= %d && !window.mam.matting`, n)))
		must(fmt.Sprintf("waiting for matte %d", n), err)
		if msg, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`window.mam.lastError`)); msg != "" {
			t.Fatalf("page error: %s", msg)
		}
	}
	// checkShown compares the page's matte (its alpha PNG and the result
	// canvas in the alpha view) with the library's for the page's prompt.
	checkShown := func() []uint8 {
		t.Helper()
		pts, err := chromedp.Run(bctx, chromedp.Evaluate[[]pagePoint](`window.mam.points`))
		must("points", err)
		bx, err := chromedp.Run(bctx, chromedp.Evaluate[*struct{ X0, Y0, X1, Y1 float64 }](`window.mam.box`))
		must("box", err)
		p := prompt{Mode: "postprocess"}
		for _, pt := range pts {
			p.Points = append(p.Points, point{pt.X, pt.Y, pt.Label})
		}
		if bx != nil {
			p.Box = &box{bx.X0, bx.Y0, bx.X1, bx.Y1}
		}
		want := libraryAlpha(t, m, dog, p)
		url, err := chromedp.Run(bctx, chromedp.Evaluate[string](`window.mam.alphaURL`))
		must("alpha URL", err)
		samePix(t, "the page's alpha PNG", grayPix(t, dataURL(t, url)), want)
		shown, err := chromedp.Run(bctx, chromedp.Evaluate[[]int](`(() => {
			document.querySelector('input[name=view][value=alpha]').click();
			const c = document.getElementById('result');
			const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
			return Array.from(d.filter((_, i) => i % 4 === 0));
		})()`))
		must("result canvas", err)
		shown8 := make([]uint8, len(shown))
		for i, v := range shown {
			shown8[i] = uint8(v)
		}
		samePix(t, "the result canvas", shown8, want)
		return want
	}

	must("open the page", chromedp.Do(bctx,
		chromedp.Navigate(ts.URL),
		chromedp.Poll[chromedp.Void](`window.mam && window.mam.info !== null`),
	))
	shot("1-empty.png")
	must("upload", chromedp.Do(bctx,
		chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{dogPath}),
		chromedp.Poll[chromedp.Void](`window.mam.imageId && !window.mam.encoding`),
	))
	enc, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("encode-time")))
	must("encode time", err)
	if !strings.Contains(enc, " ms") && !strings.Contains(enc, " s") {
		t.Errorf("encode time shown: %q", enc)
	}

	// Left click: a foreground point.
	x, y := clientXY(120, 80)
	must("click", chromedp.Do(bctx, chromedp.MouseClickXY(x, y)))
	waitMattes(1)
	checkShown()
	shot("2-click.png")

	// Right click: a background point.
	x, y = clientXY(30, 30)
	must("right click", chromedp.Do(bctx, chromedp.MouseClickXY(x, y, chromedp.ButtonRight)))
	waitMattes(2)
	if lbl, _ := chromedp.Run(bctx, chromedp.Evaluate[int](`window.mam.points[1].label`)); lbl != 0 {
		t.Errorf("right click gave label %d", lbl)
	}
	checkShown()

	// Drag: a box.
	x0, y0 := clientXY(50, 25)
	x1, y1 := clientXY(195, 140)
	left := func(p *input.DispatchMouseEventParams) { p.Button = input.MouseButtonLeft; p.Buttons = 1 }
	must("drag", chromedp.Do(bctx,
		chromedp.MouseEvent(chromedp.MousePressed, x0, y0, left, func(p *input.DispatchMouseEventParams) { p.ClickCount = 1 }),
		chromedp.MouseEvent(chromedp.MouseMoved, (x0+x1)/2, (y0+y1)/2, left),
		chromedp.MouseEvent(chromedp.MouseMoved, x1, y1, left),
		chromedp.MouseEvent(chromedp.MouseReleased, x1, y1, left, func(p *input.DispatchMouseEventParams) { p.ClickCount = 1 }),
	))
	waitMattes(3)
	if has, _ := chromedp.Run(bctx, chromedp.Evaluate[bool](`window.mam.box !== null && window.mam.box.x1 > 150`)); !has {
		t.Fatal("the drag drew no box")
	}
	checkShown()

	// Views.
	for _, v := range []string{"cutout", "composite", "greenscreen"} {
		ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](fmt.Sprintf(`(() => {
			document.querySelector('input[name=view][value=%s]').click();
			return document.getElementById('result-wrap').classList.contains('checker') === (%q === 'cutout');
		})()`, v, v)))
		must("view "+v, err)
		if !ok {
			t.Errorf("view %s: checkerboard shown wrongly", v)
		}
	}
	shot("3-box-greenscreen.png")

	// Undo removes the box and mattes again.
	must("undo", chromedp.Do(bctx, chromedp.Click(chromedp.ID("undo"))))
	waitMattes(4)
	if has, _ := chromedp.Run(bctx, chromedp.Evaluate[bool](`window.mam.box === null && window.mam.points.length === 2`)); !has {
		t.Fatal("undo did not remove the box")
	}
	want := checkShown()

	// Downloads.
	must("download setup", chromedp.Do(bctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dl})
		return err
	})))
	for _, d := range []struct{ view, button, file string }{
		{"alpha", "dl-alpha", "alpha.png"}, {"cutout", "dl-cutout", "cutout.png"},
		{"greenscreen", "dl-composite", "greenscreen.png"}, {"composite", "dl-composite", "composite.png"},
	} {
		must("download "+d.file, chromedp.Do(bctx,
			chromedp.Click(chromedp.CSS("input[name=view][value="+d.view+"]")),
			chromedp.Click(chromedp.ID(d.button))))
		b := waitFile(t, ctx, filepath.Join(dl, d.file))
		img := decodePNG(t, b)
		if img.Bounds() != dog.Bounds() {
			t.Fatalf("%s is %v", d.file, img.Bounds())
		}
		switch d.file {
		case "alpha.png":
			samePix(t, "the downloaded alpha", grayPix(t, b), want)
		case "cutout.png":
			c, ok := img.(*image.NRGBA)
			if !ok {
				t.Fatalf("cutout.png is %T", img)
			}
			for i, a := range want {
				if d := int(c.Pix[4*i+3]) - int(a); d < -1 || d > 1 { // rounded, not truncated
					t.Fatalf("cutout alpha %d = %d, matte %d", i, c.Pix[4*i+3], a)
				}
			}
		}
	}

	// Clear empties the prompt and the result.
	must("clear", chromedp.Do(bctx, chromedp.Click(chromedp.ID("clear"))))
	if ok, _ := chromedp.Run(bctx, chromedp.Evaluate[bool](`window.mam.points.length === 0 && window.mam.alpha === null`)); !ok {
		t.Error("clear left a prompt or a result")
	}
}

// waitFile waits for a completed download.
func waitFile(t *testing.T, ctx context.Context, path string) []byte {
	t.Helper()
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 && bytes.HasSuffix(b, []byte("IEND\xaeB`\x82")) {
			return b
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no download %s", path)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
