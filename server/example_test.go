package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/mam-go/mam-go/server"
)

// Serve a model: the page at /, the JSON API, rembg's /api/remove. The
// checkpoints here are the small random-weight test model; a real server
// loads sam_vit_b_01ec64.pth and mam_vitb.pth and listens with
// http.Server{Addr: "127.0.0.1:8080", Handler: srv} (see examples/server
// for timeouts, graceful shutdown and pprof).
func Example() {
	model, err := server.LoadModel("../testdata/golden/tiny/weights/sam.pth", "../testdata/golden/tiny/weights/mam.pth")
	if err != nil {
		log.Fatal(err)
	}
	srv, err := server.New(server.Config{Model: model, Slots: 2, Queue: 8, CacheBytes: 256 << 20})
	if err != nil {
		log.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	photo, err := os.ReadFile("../testdata/golden/tiny/dog_240/image.png")
	if err != nil {
		log.Fatal(err)
	}
	// Upload once: the image is encoded and cached.
	resp, err := http.Post(ts.URL+"/api/images", "image/png", bytes.NewReader(photo))
	if err != nil {
		log.Fatal(err)
	}
	var img struct {
		ID            string
		Width, Height int
	}
	json.NewDecoder(resp.Body).Decode(&img)
	resp.Body.Close()
	fmt.Println("upload:", resp.Status, img.Width, img.Height)

	// Then any number of prompts, each without the encoder.
	for _, prompt := range []string{
		`{"box": [52, 28, 187, 137]}`,
		`{"points": [[120, 80, 1], [20, 20, 0]], "output": "cutout"}`,
	} {
		resp, err := http.Post(ts.URL+"/api/images/"+img.ID+"/matte", "application/json", strings.NewReader(prompt))
		if err != nil {
			log.Fatal(err)
		}
		out, err := png.Decode(resp.Body)
		resp.Body.Close()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("matte: %s %T %v\n", resp.Status, out, out.Bounds().Size())
	}
	// Output:
	// upload: 201 Created 240 160
	// matte: 200 OK *image.Gray (240,160)
	// matte: 200 OK *image.NRGBA (240,160)
}
