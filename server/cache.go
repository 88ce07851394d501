package server

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"image"
	"sync"
)

// entry is one cached image: its pixels, its SAM embedding and its most
// recent results.
type entry struct {
	id   string
	img  *image.NRGBA
	enc  *encoded
	base int64 // bytes of img and enc

	lock chan struct{} // serialises model calls on enc

	// guarded by the cache's mutex
	results []*stored // oldest first
	elem    *list.Element
}

// stored is a kept result and the prompt that made it.
type stored struct {
	id  string
	res *result
	p   prompt
}

func newEntry(id string, img *image.NRGBA, enc *encoded) *entry {
	return &entry{id: id, img: img, enc: enc, lock: make(chan struct{}, 1),
		base: int64(len(img.Pix)) + enc.bytes()}
}

func (e *entry) width() int  { return e.img.Rect.Dx() }
func (e *entry) height() int { return e.img.Rect.Dy() }

// acquire takes e's lock, or returns ctx's error.
func (e *entry) acquire(ctx context.Context) error {
	select {
	case e.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *entry) unlock() { <-e.lock }

// size is e's bytes with its results; the cache's mutex must be held.
func (e *entry) size() int64 {
	n := e.base
	for _, s := range e.results {
		n += s.bytes()
	}
	return n
}

func (s *stored) bytes() int64 {
	return s.res.bytes() + int64(len(s.p.Mask))*4 + int64(len(s.p.Points))*24 + 64
}

// cache keeps entries by id, least recently used first out, within a bound
// in bytes.
type cache struct {
	mu         sync.Mutex
	limit      int64
	used       int64
	maxResults int
	ll         *list.List // front: most recently used
	items      map[string]*entry
	met        *metrics
}

func newCache(limit int64, maxResults int, met *metrics) *cache {
	return &cache{limit: limit, maxResults: maxResults, ll: list.New(), items: map[string]*entry{}, met: met}
}

// newID is a random id of 128 bits, unguessable.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// add inserts e, evicting the least recently used entries to make room.
// It fails when e alone exceeds the bound.
func (c *cache) add(e *entry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := e.size()
	if n > c.limit {
		return fmt.Errorf("%w: the image needs %d MB of cache, the cache holds %d MB", errTooLarge, n>>20, c.limit>>20)
	}
	if old, ok := c.items[e.id]; ok {
		c.removeLocked(old)
	}
	e.elem = c.ll.PushFront(e)
	c.items[e.id] = e
	c.used += n
	c.evictLocked(e)
	c.report()
	return nil
}

// get returns the entry of id and marks it used.
func (c *cache) get(id string) (*entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[id]
	if !ok {
		c.met.cacheMisses.Inc()
		return nil, false
	}
	c.met.cacheHits.Inc()
	c.ll.MoveToFront(e.elem)
	return e, true
}

// peek returns the entry of id without counting a hit or a miss.
func (c *cache) peek(id string) (*entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[id]
	return e, ok
}

// remove drops the entry of id.
func (c *cache) remove(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[id]
	if ok {
		c.removeLocked(e)
		c.report()
	}
	return ok
}

// addResult keeps s among e's recent results (dropping the oldest beyond
// the limit) and evicts other entries if the cache is over its bound.
func (c *cache) addResult(e *entry, s *stored) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.maxResults <= 0 {
		return
	}
	inCache := c.items[e.id] == e
	before := e.size()
	e.results = append(e.results, s)
	if len(e.results) > c.maxResults {
		e.results = append([]*stored(nil), e.results[len(e.results)-c.maxResults:]...)
	}
	if !inCache {
		return
	}
	c.used += e.size() - before
	// Drop this entry's oldest results before other images if it alone
	// exceeds the bound.
	for c.used > c.limit && len(e.results) > 1 && e.size() > c.limit {
		c.used -= e.results[0].bytes()
		e.results = e.results[1:]
	}
	c.evictLocked(e)
	c.report()
}

// result returns e's kept result rid.
func (c *cache) result(e *entry, rid string) (*stored, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range e.results {
		if s.id == rid {
			return s, true
		}
	}
	return nil, false
}

// usedBytes is the memory the cache holds.
func (c *cache) usedBytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// evictLocked evicts least recently used entries other than keep until
// the cache is within its bound.
func (c *cache) evictLocked(keep *entry) {
	for c.used > c.limit {
		el := c.ll.Back()
		if el == nil {
			return
		}
		e := el.Value.(*entry)
		if e == keep {
			if el = el.Prev(); el == nil {
				return
			}
			e = el.Value.(*entry)
		}
		c.removeLocked(e)
		c.met.cacheEvicts.Inc()
	}
}

func (c *cache) removeLocked(e *entry) {
	c.ll.Remove(e.elem)
	delete(c.items, e.id)
	c.used -= e.size()
}

func (c *cache) report() {
	c.met.cacheBytes.Set(float64(c.used))
	c.met.cacheImages.Set(float64(len(c.items)))
}
