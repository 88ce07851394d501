package main

import (
	"context"
	"fmt"
	"image"

	"github.com/mam-go/mam-go/mam"
)

// modelMatter runs a loaded model in a given refinement mode. Consecutive
// calls on the same image value (HIM2K's instances of one image) share one
// mam.Session, so the image is encoded once; the mattes are the same as
// separate Matte calls give.
type modelMatter struct {
	m       *mam.Model
	lastImg image.Image
	sess    *mam.Session
}

// Matte mattes img with prompt p, refined in mode.
func (mm *modelMatter) Matte(ctx context.Context, img image.Image, p mam.Prompt, mode mam.Mode) (*mam.Result, error) {
	if mm.sess == nil || mm.lastImg != img {
		mm.sess, mm.lastImg = nil, nil
		s, err := mm.m.NewSession(ctx, img)
		if err != nil {
			return nil, err
		}
		mm.sess, mm.lastImg = s, img
	}
	return mm.sess.Matte(ctx, p, mam.WithMode(mode))
}

// loadModel loads the SAM and MAM checkpoints; tests replace it.
var loadModel = func(ctx context.Context, samPath, mamPath string) (matter, error) {
	m, err := mam.Load(ctx, samPath, mamPath)
	if err != nil {
		return nil, fmt.Errorf("loading model: %w", err)
	}
	return &modelMatter{m: m}, nil
}
