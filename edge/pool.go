package edge

import (
	"errors"
	"fmt"
	"slices"
	"sync"
)

// A pool holds the parts of a running server that outlive a generation:
// upstreams with their connections and probes, bootstrap resolvers, the
// answer cache, certificate sources, listeners and the HTTP endpoint.
// Each part is kept under a typed key that holds everything it was built
// from, and counted by the holders that use it; a part is closed when its
// last holder lets go. A reload whose configuration gives a part the same
// key gets the running part: an unchanged file builds nothing again. A new
// kind of state that must survive reloads is one more key type, not a
// mechanism of its own.
//
// The pool is safe for concurrent use.
type pool struct {
	mu sync.Mutex
	m  map[any]*poolEntry
}

type poolEntry struct {
	val   any
	refs  int
	close func() error
}

func newPool() *pool { return &pool{m: make(map[any]*poolEntry)} }

// A hold is a set of pool keys taken by one holder: a generation's parts,
// or the listeners of the configuration in force. Releasing it is the one
// way to let go, whether the holder retires or a reload that took it is
// abandoned.
type hold struct {
	p    *pool
	keys []any
}

func (p *pool) hold() *hold { return &hold{p: p} }

// take returns the part under key, building it when the pool has none,
// and holds it for h. fresh reports whether it was built now. A failed
// build leaves the pool as it was.
func take[T any](h *hold, key any, build func() (T, func() error, error)) (v T, fresh bool, err error) {
	p := h.p
	p.mu.Lock()
	if e, ok := p.m[key]; ok {
		e.refs++
		h.keys = append(h.keys, key)
		p.mu.Unlock()
		return e.val.(T), false, nil
	}
	p.mu.Unlock()
	// Build outside the lock: building may take long (ACME issuance, the
	// first resolution of a host name). Only one reload builds at a time,
	// so nobody else adds this key meanwhile.
	v, closeFn, err := build()
	if err != nil {
		return v, false, err
	}
	p.mu.Lock()
	p.m[key] = &poolEntry{val: v, refs: 1, close: closeFn}
	h.keys = append(h.keys, key)
	p.mu.Unlock()
	return v, true, nil
}

// holds reports whether h holds key.
func (h *hold) holds(key any) bool { return slices.Contains(h.keys, key) }

// release lets go of every key of h, last taken first, closing the parts
// nobody holds any more. It may be called more than once.
func (h *hold) release() error {
	if h == nil {
		return nil
	}
	p := h.p
	var closers []func() error
	p.mu.Lock()
	for i := len(h.keys) - 1; i >= 0; i-- {
		k := h.keys[i]
		e, ok := p.m[k]
		if !ok {
			continue
		}
		if e.refs--; e.refs == 0 {
			delete(p.m, k)
			if e.close != nil {
				closers = append(closers, e.close)
			}
		}
	}
	h.keys = nil
	p.mu.Unlock()
	var errs []error
	for _, c := range closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// each calls f with every part of type T in the pool, under the pool's
// lock: f must not call back into the pool.
func each[T any](p *pool, f func(key any, v T)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, e := range p.m {
		if v, ok := e.val.(T); ok {
			f(k, v)
		}
	}
}

// len returns the number of parts in the pool, for tests.
func (p *pool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}

func (p *pool) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("pool(%d parts)", len(p.m))
}
