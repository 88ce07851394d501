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

// Matte mattes img with prompt p, refined in mode. A text prompt's boxes
// are found with the reference's thresholds (textThresholds) and the best
// one is the box prompt.
func (mm *modelMatter) Matte(ctx context.Context, img image.Image, p mam.Prompt, mode mam.Mode) (*mam.Result, error) {
	if mm.sess == nil || mm.lastImg != img {
		mm.sess, mm.lastImg = nil, nil
		s, err := mm.m.NewSession(ctx, img)
		if err != nil {
			return nil, err
		}
		mm.sess, mm.lastImg = s, img
	}
	opts := []mam.MatteOption{mam.WithMode(mode)}
	if p.Text != "" {
		opts = append(opts, mam.WithThresholds(textThresholds[0], textThresholds[1], textThresholds[2]))
	}
	return mm.sess.Matte(ctx, p, opts...)
}

// modelFiles are the checkpoints to load: SAM and MAM, and for text
// prompts GroundingDINO and BERT's vocabulary.
type modelFiles struct {
	sam, mam, gdino, vocab string
}

// loadModel loads the checkpoints; tests replace it.
var loadModel = func(ctx context.Context, f modelFiles) (matter, error) {
	var opts []mam.Option
	if f.gdino != "" {
		opts = append(opts, mam.WithDetector(f.gdino, f.vocab))
	}
	m, err := mam.Load(ctx, f.sam, f.mam, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading model: %w", err)
	}
	return &modelMatter{m: m}, nil
}
