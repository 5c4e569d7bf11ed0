package main

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// holdIdle opens o.idleConns DNS-over-TLS connections to o.addr, asks q
// once on each so the server has set up everything a live connection needs,
// prints "ready established=N failed=N" and holds them until o.hold passes
// or ctx ends.
func holdIdle(ctx context.Context, o options, q []byte, tlsConf *tls.Config) error {
	var (
		mu     sync.Mutex
		conns  []net.Conn
		failed int
		first  error
		wg     sync.WaitGroup
		sem    = make(chan struct{}, 32) // handshakes in flight
	)
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for i := range o.idleConns {
		var local net.Addr
		if o.perSource > 0 {
			n := i / o.perSource
			local = &net.TCPAddr{IP: net.IPv4(127, byte(1+n/250), byte(1+n%250), 1)}
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := oneDoT(dctx, o.addr, local, tlsConf, q, o.timeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				if first == nil {
					first = err
				}
				return
			}
			conns = append(conns, c)
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if first != nil {
		fmt.Printf("first error: %v\n", first)
	}
	fmt.Printf("ready established=%d failed=%d\n", len(conns), failed)
	select {
	case <-ctx.Done():
	case <-time.After(o.hold):
	}
	return nil
}

func oneDoT(ctx context.Context, addr string, local net.Addr, tlsConf *tls.Config, q []byte, timeout time.Duration) (net.Conn, error) {
	d := tls.Dialer{Config: tlsConf, NetDialer: &net.Dialer{LocalAddr: local}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(timeout))
	buf := make([]byte, 2+len(q))
	binary.BigEndian.PutUint16(buf, uint16(len(q)))
	copy(buf[2:], q)
	var n [2]byte
	if _, err := c.Write(buf); err != nil {
		c.Close()
		return nil, fmt.Errorf("write query: %w", err)
	}
	if _, err := io.ReadFull(c, n[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("read length: %w", err)
	}
	if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint16(n[:]))); err != nil {
		c.Close()
		return nil, fmt.Errorf("read answer: %w", err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
