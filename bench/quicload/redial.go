package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
)

// closer is an exchanger that can tell its connection has ended.
type closer interface{ ended() bool }

func (d *doq) ended() bool { return d.conn.Context().Err() != nil }

// redialer is one connection that is opened again when the server closes
// it, as a stub resolver does: a server going away (dnsedge handing over
// to a new binary) closes its DoQ connections with DOQ_NO_ERROR. A query
// that fails because its connection ended is asked once more on the new
// connection, within its own timeout, as is one whose stream the server
// reset; it is lost only when that fails too.
type redialer struct {
	dial    func(context.Context) (exchanger, error)
	redials *atomic.Int64
	retried *atomic.Int64 // queries sent and asked again, each counted once

	mu  sync.Mutex
	cur exchanger
}

func (r *redialer) get() exchanger {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

func (r *redialer) exchange(ctx context.Context, q []byte) ([]byte, error) {
	c := r.get()
	if e, ok := c.(closer); ok && e.ended() {
		// Closed before this query was sent: not a query asked again.
		nc, err := r.replace(ctx, c)
		if err != nil {
			return nil, err
		}
		c = nc
	}
	for attempt := 0; ; attempt++ {
		if attempt == 1 {
			r.retried.Add(1)
		}
		b, err := c.exchange(ctx, q)
		if err == nil || attempt == 2 || ctx.Err() != nil {
			return b, err
		}
		var (
			se *quic.StreamError
			ae *quic.ApplicationError
		)
		switch e, ok := c.(closer); {
		case ok && e.ended(), errors.As(err, &ae) && ae.Remote:
			// The connection ended; a stream's read may say so (the
			// server closed it, as DOQ_NO_ERROR) before the
			// connection's context does.
			nc, derr := r.replace(ctx, c)
			if derr != nil {
				return nil, errors.Join(err, derr)
			}
			c = nc
		case errors.As(err, &se) && se.Remote:
			// The server reset the stream (it is closing): again.
		default:
			return nil, err
		}
	}
}

// replace dials a connection in place of old, unless another query did
// already.
func (r *redialer) replace(ctx context.Context, old exchanger) (exchanger, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != old {
		return r.cur, nil
	}
	nc, err := r.dial(ctx)
	if err != nil {
		return nil, err
	}
	old.close()
	r.cur = nc
	r.redials.Add(1)
	return nc, nil
}

func (r *redialer) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cur.close()
}
