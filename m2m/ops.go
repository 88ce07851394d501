package m2m

// This file mirrors networks/ops.py's SpectralNorm in eval mode, and folds
// each eval BatchNorm2d into the convolution before it.

import (
	"github.com/mam-go/mam-go/nn"
)

// convBN is a convolution with the BatchNorm that follows it folded in:
// the scaled weight and the bias.
type convBN struct {
	w, b nn.Weight
}

// newConvBN fetches the SpectralNorm-wrapped convolution under conv (its
// weight_bar has shape) and the BatchNorm2d under bn, and folds them.
// shape[0] is the out_channels of a Conv2d and the in_channels of a
// ConvTranspose2d (PyTorch's weight layouts).
func newConvBN(conv, bn *nn.Params, transposed bool, shape ...int) convBN {
	cout := shape[0]
	if transposed {
		cout = shape[1]
	}
	return foldBatchNorm(spectralNorm(conv, shape...), transposed, bn, cout)
}

// spectralNorm fetches the SpectralNorm-wrapped weight of ops.py under p
// (weight_bar, weight_u, weight_v) and returns it in eval form, as
// _noupdate_u_v computes it:
//
//	sigma = u . (W_bar.view(shape[0], -1) @ v),  W = W_bar / sigma.
func spectralNorm(p *nn.Params, shape ...int) nn.Weight {
	bar := p.Floats("weight_bar", shape...)
	rows := shape[0]
	cols := len(bar) / rows
	u := p.Floats("weight_u", rows)
	v := p.Floats("weight_v", cols)
	var sigma float64
	for r := 0; r < rows; r++ {
		var wv float64
		for c, x := range bar[r*cols : (r+1)*cols] {
			wv += float64(x) * float64(v[c])
		}
		sigma += float64(u[r]) * wv
	}
	w := make([]float32, len(bar))
	if sigma == 0 {
		p.Errorf("m2m: %s: spectral norm sigma is 0", p.Prefix()+"weight_bar")
	} else {
		sg := float32(sigma)
		for i, x := range bar {
			w[i] = x / sg
		}
	}
	return nn.Weight{Name: p.Prefix() + "weight", Shape: append([]int(nil), shape...), Data: w}
}

// foldBatchNorm merges the eval BatchNorm2d of c channels under bn (weight,
// bias, running_mean, running_var; num_batches_tracked, which eval mode
// ignores, is ignored) into the bias-free convolution w before it:
// BN(conv(x, W)) = conv(x, W*scale) + shift per output channel, with
// scale and shift as PyTorch's CPU inference kernel applies them. The
// output channel is axis 0 of a Conv2d weight (Cout, Cin, KH, KW) and
// axis 1 of a ConvTranspose2d weight (Cin, Cout, KH, KW).
func foldBatchNorm(w nn.Weight, transposed bool, bn *nn.Params, c int) convBN {
	scale, shift := nn.BatchNormFold(bn.Floats("weight", c), bn.Floats("bias", c),
		bn.Floats("running_mean", c), bn.Floats("running_var", c), nn.BatchNormEps)
	bn.Ignore("num_batches_tracked")
	sh := w.Shape
	out := make([]float32, len(w.Data))
	taps := sh[2] * sh[3]
	for i, v := range w.Data {
		co := i / (sh[1] * taps) // Conv2d: (co, ci, i, j)
		if transposed {
			co = (i / taps) % sh[1] // ConvTranspose2d: (ci, co, i, j)
		}
		out[i] = v * scale[co]
	}
	return convBN{
		w: nn.Weight{Name: w.Name + ":bn", Shape: sh, Data: out},
		b: nn.Weight{Name: bn.Prefix() + "shift", Shape: []int{c}, Data: shift},
	}
}
