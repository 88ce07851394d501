package server

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// limiter bounds the work in progress: at most slots requests run the
// model and at most queue more wait for a slot. A request is admitted (or
// refused at once) before its body is read, so the memory of request
// bodies, decoded images and inference is bounded by slots + queue.
type limiter struct {
	admit   chan struct{} // slots + queue tokens
	slots   chan struct{} // slots tokens
	waiting atomic.Int64
	met     *metrics
}

func newLimiter(slots, queue int, met *metrics) *limiter {
	return &limiter{admit: make(chan struct{}, slots+queue), slots: make(chan struct{}, slots), met: met}
}

// ticket is an admitted request's place within slots + queue. The handler
// and any work it leaves running in the background each hold it; the place
// is given back when the last lets go.
type ticket struct {
	l    *limiter
	refs atomic.Int32
}

// hold adds a holder.
func (t *ticket) hold() { t.refs.Add(1) }

// release drops a holder; the last gives the place back.
func (t *ticket) release() {
	if t.refs.Add(-1) == 0 {
		<-t.l.admit
	}
}

// tryAdmit admits a request if slots + queue allow it. The caller holds
// the ticket and must release it.
func (l *limiter) tryAdmit() (*ticket, bool) {
	select {
	case l.admit <- struct{}{}:
		t := &ticket{l: l}
		t.refs.Store(1)
		return t, true
	default:
		return nil, false
	}
}

// slot waits for an inference slot, or for ctx to end. release gives the
// slot back.
func (l *limiter) slot(ctx context.Context) (release func(), waited time.Duration, err error) {
	start := time.Now()
	l.met.queueDepth.Set(float64(l.waiting.Add(1)))
	defer func() {
		l.met.queueDepth.Set(float64(l.waiting.Add(-1)))
		waited = l.met.time(stageQueue, start)
	}()
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("waiting for an inference slot: %w", ctx.Err())
	}
	l.met.running.Inc()
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			l.met.running.Dec()
			<-l.slots
		}
	}, 0, nil
}

// run calls fn(ctx) holding an inference slot. It returns fn's error, or
// ctx's as soon as ctx ends: fn then goes on in the background (it sees
// ctx ended and stops at its next step) and holds its slot and t until it
// returns, so that abandoned work still counts against the limits. A
// panic in fn is returned as an error.
// queued is the time spent waiting for the slot.
func (l *limiter) run(ctx context.Context, t *ticket, fn func(context.Context) error) (queued time.Duration, err error) {
	release, queued, err := l.slot(ctx)
	if err != nil {
		return queued, err
	}
	t.hold()
	ch := make(chan error, 1)
	go func() {
		defer t.release()
		defer release()
		defer func() {
			if v := recover(); v != nil {
				ch <- fmt.Errorf("%w: panic: %v", errInternalErr, v)
			}
		}()
		ch <- fn(ctx)
	}()
	select {
	case err := <-ch:
		return queued, err
	case <-ctx.Done():
		select {
		case err := <-ch: // finished at the same time: keep its answer
			return queued, err
		default:
		}
		return queued, ctx.Err()
	}
}
