package gdino

import (
	"fmt"
	"math"
)

// Post-processing as Matting Anything's demo does it for a text prompt
// (GroundingDINO's util/inference.py predict and Model.post_process_result,
// then gradio_app.py's NMS and best box).

// Detection is one box found for a caption.
type Detection struct {
	// Box is (x0, y0, x1, y1) in pixels of the original image, in float32
	// as the reference computes it and not clipped: a box may extend past
	// the image.
	Box [4]float32
	// Score is the box's confidence: the largest probability (sigmoid of
	// the logit) over the caption's tokens.
	Score float32
	// Phrase is the text of the tokens whose probability passed the text
	// threshold, decoded as the demo does (MAM's copy keeps "[CLS]" and
	// "[SEP]"; every "." removed); "" when none did.
	Phrase string
}

// PostprocessOptions are the thresholds of the post-processing; every
// comparison is strict (a value equal to its threshold does not pass, and a
// box whose IoU equals NMSThreshold is kept).
type PostprocessOptions struct {
	BoxThreshold  float32 // a query is a detection if its score is above this
	TextThreshold float32 // a token is in the phrase if its probability is above this
	NMSThreshold  float32 // NMS drops a box overlapping a better one by more than this IoU
}

// DefaultPostprocessOptions are MAM's demo defaults: box and text
// thresholds 0.25, NMS IoU 0.5.
func DefaultPostprocessOptions() PostprocessOptions {
	return PostprocessOptions{BoxThreshold: 0.25, TextThreshold: 0.25, NMSThreshold: 0.5}
}

// postprocessed is the result of postprocess.
type postprocessed struct {
	// Queries are the queries whose score passed the box threshold, in
	// query order.
	Queries []int
	// Detections are those queries' detections, in query order (the
	// demo's detections before NMS).
	Detections []Detection
	// Keep lists the detections NMS keeps, as indices into Detections, by
	// decreasing score (torchvision.ops.nms's result).
	Keep []int
	// Kept is Detections[Keep[i]]: the demo's detections after NMS. Each
	// keeps its own phrase (the demo reorders the boxes and scores but not
	// the phrase list, which it does not use afterwards).
	Kept []Detection
}

// Best is the box MAM hands to SAM: the first of the highest score after
// NMS (np.argmax), which is Kept[0]; false when no box passed the box
// threshold (where the demo fails).
func (r *postprocessed) Best() (Detection, bool) {
	if len(r.Kept) == 0 {
		return Detection{}, false
	}
	return r.Kept[0], true
}

// phraser gives the phrase of a query from its token probabilities:
// (*Tokenizer).Phrase.
type phraser interface {
	Phrase(fullIDs []int, probs []float32, textThreshold float32) string
}

// postprocess turns the decoder's outputs into detections as the demo
// does: logits (nq, cols) (pred_logits, -inf past the caption's tokens) and
// boxes (nq, 4) (pred_boxes: normalised cx, cy, w, h) for an original
// image of width x height pixels; fullIDs are the caption's untruncated
// token ids and tok decodes the phrases (nil: every phrase is "").
//
//   - prob = sigmoid(logits); score = max over the columns; a query whose
//     score is above BoxThreshold is a detection (a NaN score never is);
//   - its phrase: the tokens with prob above TextThreshold (Tokenizer.Phrase);
//   - its box: (cx, cy, w, h) times (width, height, width, height), then
//     (cx - w/2, cy - h/2, cx + w/2, cy + h/2), in float32, not clipped;
//   - NMS (nms) when there is more than one detection.
//
// No detection is an empty result, not an error.
func postprocess(logits, boxes []float32, width, height int, fullIDs []int, tok phraser, opt PostprocessOptions) (*postprocessed, error) {
	if len(boxes)%4 != 0 {
		return nil, fmt.Errorf("gdino: postprocess: %d box values", len(boxes))
	}
	nq := len(boxes) / 4
	if nq == 0 {
		if len(logits) != 0 {
			return nil, fmt.Errorf("gdino: postprocess: %d logits for no box", len(logits))
		}
		return &postprocessed{}, nil
	}
	if len(logits)%nq != 0 {
		return nil, fmt.Errorf("gdino: postprocess: %d logits for %d boxes", len(logits), nq)
	}
	if width <= 0 || height <= 0 {
		return nil, fmt.Errorf("gdino: postprocess: image size %dx%d", width, height)
	}
	cols := len(logits) / nq
	scale := [4]float32{float32(width), float32(height), float32(width), float32(height)}
	res := &postprocessed{}
	prob := make([]float32, cols)
	for q := 0; q < nq; q++ {
		score := float32(math.Inf(-1))
		for j, v := range logits[q*cols : (q+1)*cols] {
			prob[j] = sigmoid32(v)
			if prob[j] > score || prob[j] != prob[j] {
				score = prob[j]
			}
		}
		if !(score > opt.BoxThreshold) { // false for NaN
			continue
		}
		var b [4]float32
		for c := range b {
			b[c] = boxes[q*4+c] * scale[c]
		}
		d := Detection{Box: cxcywhToXYXY(b), Score: score}
		if tok != nil {
			d.Phrase = tok.Phrase(fullIDs, prob, opt.TextThreshold)
		}
		res.Queries = append(res.Queries, q)
		res.Detections = append(res.Detections, d)
	}
	switch len(res.Detections) {
	case 0:
		return res, nil
	case 1:
		res.Keep = []int{0}
	default:
		bs := make([][4]float32, len(res.Detections))
		scores := make([]float32, len(res.Detections))
		for i, d := range res.Detections {
			bs[i], scores[i] = d.Box, d.Score
		}
		res.Keep = nms(bs, scores, opt.NMSThreshold)
	}
	for _, i := range res.Keep {
		res.Kept = append(res.Kept, res.Detections[i])
	}
	return res, nil
}

// cxcywhToXYXY is torchvision's box_convert(in_fmt="cxcywh",
// out_fmt="xyxy") in float32.
func cxcywhToXYXY(b [4]float32) [4]float32 {
	cx, cy, w, h := b[0], b[1], b[2], b[3]
	return [4]float32{cx - 0.5*w, cy - 0.5*h, cx + 0.5*w, cy + 0.5*h}
}

// nms is torchvision.ops.nms on CPU: boxes (x0, y0, x1, y1) are taken by
// decreasing score (NaN first, as torch's sort puts it; equal scores in
// index order, where torch's unstable sort leaves the order open beyond
// 16 boxes); each box not yet suppressed is kept and suppresses every later
// box whose IoU with it is above iou (strictly). IoU = inter / (area_i +
// area_j - inter) in float32, areas (x1-x0)*(y1-y0) without +1; a zero
// union gives NaN, which suppresses nothing. It returns the kept indices
// in decreasing score.
func nms(boxes [][4]float32, scores []float32, iou float32) []int {
	n := min(len(boxes), len(scores))
	order := byDecreasingScore(scores[:n])
	area := make([]float32, n)
	for i, b := range boxes[:n] {
		area[i] = (b[2] - b[0]) * (b[3] - b[1])
	}
	thr := float64(iou)
	suppressed := make([]bool, n)
	var keep []int
	for oi, i := range order {
		if suppressed[i] {
			continue
		}
		keep = append(keep, i)
		bi := boxes[i]
		for _, j := range order[oi+1:] {
			if suppressed[j] {
				continue
			}
			bj := boxes[j]
			w := max(0, min(bi[2], bj[2])-max(bi[0], bj[0]))
			h := max(0, min(bi[3], bj[3])-max(bi[1], bj[1]))
			inter := w * h
			ovr := inter / (area[i] + area[j] - inter)
			if float64(ovr) > thr {
				suppressed[j] = true
			}
		}
	}
	return keep
}
