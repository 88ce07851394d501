package nn

// weightCache keeps what an op derives from its weights (packed panels)
// between runs of its graph, keyed by the weights' storage: graphs bind the
// same parameter tensors every run, which must not be modified in place
// while bound. Weights computed by other ops are never cached (their
// buffers are recycled).
type weightCache struct {
	key []weightKey
	val any
}

type weightKey struct {
	p *float32
	n int
}

// get returns the cached value for weights ws, making it when they are
// not the ones it was made from. A nil cache makes it every time.
func (wc *weightCache) get(ws [][]float32, build func() any) any {
	if wc == nil {
		return build()
	}
	key := weightKeys(ws)
	if wc.val != nil && len(key) == len(wc.key) {
		same := true
		for i := range key {
			same = same && key[i] == wc.key[i]
		}
		if same {
			return wc.val
		}
	}
	wc.key, wc.val = key, build()
	return wc.val
}

// weightCache returns a cache for weights that are all inputs or parameters, nil
// (no caching) when one is computed by an op.
func (g *Graph) weightCache(ws ...*Node) *weightCache {
	for _, w := range ws {
		if g.computed(w) {
			return nil
		}
	}
	return &weightCache{}
}

func weightKeys(ws [][]float32) []weightKey {
	key := make([]weightKey, len(ws))
	for i, w := range ws {
		if len(w) > 0 {
			key[i] = weightKey{&w[0], len(w)}
		}
	}
	return key
}
