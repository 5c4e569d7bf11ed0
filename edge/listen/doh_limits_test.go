package listen

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// dialDoHTLS opens a TLS connection to l offering alpn, or returns the
// error of the handshake.
func dialDoHTLS(t testing.TB, l *DoH, alpn string) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", l.Addr().String(), testTLS(t).clientTLS("dns.test", alpn))
	if err != nil {
		return nil, err
	}
	return c, nil
}

// refused reports whether the connection c, just made, is closed by the
// server (rather than left open) within timeout.
func refused(c net.Conn, timeout time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(timeout))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !isTimeout(err)
}

// TestDoHConnLimits checks MaxConnsPerClient and MaxConns: the connection
// beyond the cap is closed, and a slot freed by a closed connection is
// given again.
func TestDoHConnLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		perClient int
		total     int
		reason    reason
	}{
		{"per client", 2, 100, reasonClientLimit},
		{"total", 100, 2, reasonConnLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			cfg := dohTestConfig(t, fam4, &fakeHandler{t: t, serve: answerA}, testTLS(t))
			cfg.MaxConnsPerClient, cfg.MaxConns = tt.perClient, tt.total
			cfg.ReadTimeout = 10 * time.Second // held connections send nothing
			cfg.Metrics = NewMetrics(reg)
			l := startDoH(t, cfg)
			var held []*tls.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for i := range 2 {
				c, err := dialDoHTLS(t, l, "http/1.1")
				if err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
				held = append(held, c)
			}
			c, err := dialDoHTLS(t, l, "http/1.1")
			if err == nil {
				defer c.Close()
				if !refused(c, 2*time.Second) {
					t.Fatal("third connection stays open")
				}
			}
			labels := map[string]string{"listener": "doh", "reason": tt.reason.String()}
			if v := metricValue(t, reg, "dnsedge_listener_dropped_total", labels); v != 1 {
				t.Errorf("dropped%v = %v, want 1", labels, v)
			}
			// Free a slot: a new connection gets in once the server has
			// seen the close.
			held[0].Close()
			held = held[1:]
			deadline := time.Now().Add(2 * time.Second)
			for {
				c, err := dialDoHTLS(t, l, "http/1.1")
				if err == nil && !refused(c, 100*time.Millisecond) {
					held = append(held, c)
					break
				}
				if c != nil {
					c.Close()
				}
				if time.Now().After(deadline) {
					t.Fatalf("no slot after a close: %v", err)
				}
			}
		})
	}
}

// TestDoHHandshakeTimeout checks that a client that connects and never
// completes the TLS handshake is cut after HandshakeTimeout.
func TestDoHHandshakeTimeout(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	cfg := dohTestConfig(t, fam4, &fakeHandler{t: t}, testTLS(t))
	cfg.HandshakeTimeout = 200 * time.Millisecond
	cfg.Metrics = NewMetrics(reg)
	l := startDoH(t, cfg)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	begin := time.Now()
	if !refused(c, 3*time.Second) {
		t.Fatal("stalled handshake not cut within 3s")
	}
	if took := time.Since(begin); took < 150*time.Millisecond || took > 2*time.Second {
		t.Errorf("cut after %v, want about 200ms", took)
	}
	labels := map[string]string{"listener": "doh", "reason": "tls"}
	if v := metricValue(t, reg, "dnsedge_listener_dropped_total", labels); v != 1 {
		t.Errorf("dropped%v = %v, want 1", labels, v)
	}
}

// TestDoHSlowloris checks that a client sending its request headers byte
// by byte is cut after ReadTimeout.
func TestDoHSlowloris(t *testing.T) {
	t.Parallel()
	for _, proto := range []string{"tls", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			cfg := dohTestConfig(t, fam4, &fakeHandler{t: t}, testTLS(t))
			cfg.ReadTimeout = 300 * time.Millisecond
			cfg.H2C = proto == "h2c"
			l := startDoH(t, cfg)
			var c net.Conn
			var err error
			if cfg.H2C {
				c, err = net.Dial("tcp", l.Addr().String())
			} else {
				c, err = dialDoHTLS(t, l, "http/1.1")
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			closed := make(chan time.Time, 1)
			go func() {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				io.Copy(io.Discard, c)
				closed <- time.Now()
			}()
			req := []byte("GET /dns-query?dns=" + dohB64(t, query("example.org.", dns.TypeA)) +
				" HTTP/1.1\r\nHost: dns.test\r\nAccept: application/dns-message\r\nUser-Agent: slow\r\n\r\n")
			begin := time.Now()
			tick := time.NewTicker(40 * time.Millisecond)
			defer tick.Stop()
			for i := range req {
				select {
				case at := <-closed:
					if took := at.Sub(begin); took > cfg.ReadTimeout+time.Second {
						t.Errorf("cut after %v, want about %v", took, cfg.ReadTimeout)
					}
					return
				case <-tick.C:
					c.Write(req[i : i+1])
				}
			}
			t.Fatalf("whole request sent in %v without the connection being cut", time.Since(begin))
		})
	}
}

// TestDoHCloseInFlight closes the listener while queries are being
// served: they are answered, and Close returns once they are.
func TestDoHCloseInFlight(t *testing.T) {
	t.Parallel()
	const n = 4
	arrived := make(chan struct{}, n)
	release := make(chan struct{})
	h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return answerA(ctx, req)
	}}
	cfg := dohTestConfig(t, fam4, h, testTLS(t))
	cfg.HTTP3 = true
	l, err := ListenDoH(cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- l.Serve() }()
	var wg sync.WaitGroup
	results := make(chan int, n)
	for i := range n {
		proto := []string{"h2", "h1", "h3"}[i%3]
		c := newDoHClient(t, proto, l, testTLS(t).roots)
		wg.Go(func() {
			wire, _ := query("example.org.", dns.TypeA).Pack()
			req, _ := http.NewRequest(http.MethodPost, c.base+"/dns-query", bytes.NewReader(wire))
			req.Header.Set("Content-Type", dnsMessageType)
			resp, err := c.Do(req)
			if err != nil {
				t.Errorf("%s: %v", proto, err)
				results <- 0
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			m := new(dns.Msg)
			if resp.StatusCode != http.StatusOK || m.Unpack(b) != nil || len(m.Answer) != 1 {
				t.Errorf("%s: status %d body %x", proto, resp.StatusCode, b)
			}
			results <- resp.StatusCode
		})
	}
	for range n {
		<-arrived
	}
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	for i := 0; !l.isClosed(); i++ {
		if i == 1000 {
			t.Fatal("Close did not begin")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("close: %v", err)
		}
	case <-time.After(cfg.QueryTimeout + 2*time.Second):
		t.Fatal("Close did not return")
	}
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
	if err := l.Serve(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		t.Error("still accepting after Close")
	}
}
