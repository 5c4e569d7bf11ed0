package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/transport/transporttest"
	"github.com/miekg/dns"
	"golang.org/x/net/http2"
)

// encKind is one encrypted protocol under test: how to start its test
// server, build its exchanger, and drop the exchanger's live connection
// so the next query has to dial.
type encKind struct {
	name  string
	start func(testing.TB, transporttest.ServerConfig) *transporttest.EncryptedServer
	newEx func(t *testing.T, addr netip.AddrPort, base *tls.Config) Exchanger
	drop  func(Exchanger)
}

var encKinds = []encKind{
	{
		name:  "dot",
		start: transporttest.StartDoT,
		newEx: func(t *testing.T, addr netip.AddrPort, base *tls.Config) Exchanger {
			x, err := NewDoT(addr, base, TCPConfig{})
			if err != nil {
				t.Fatal(err)
			}
			return x
		},
		drop: func(x Exchanger) {
			t := x.(*TCP)
			t.mu.Lock()
			c := t.cur
			t.mu.Unlock()
			c.fail(errIdle)
		},
	},
	{
		name:  "doh",
		start: transporttest.StartDoH,
		newEx: func(t *testing.T, addr netip.AddrPort, base *tls.Config) Exchanger {
			x, err := NewDoH(addr, DoHConfig{TLS: base})
			if err != nil {
				t.Fatal(err)
			}
			return x
		},
		drop: func(x Exchanger) { x.(*DoH).rt.(*http2.Transport).CloseIdleConnections() },
	},
	{
		name: "doh3",
		start: func(t testing.TB, cfg transporttest.ServerConfig) *transporttest.EncryptedServer {
			cfg.HTTP3 = true
			return transporttest.StartDoH(t, cfg)
		},
		newEx: func(t *testing.T, addr netip.AddrPort, base *tls.Config) Exchanger {
			x, err := NewDoH(addr, DoHConfig{TLS: base, HTTP3: true})
			if err != nil {
				t.Fatal(err)
			}
			return x
		},
		drop: nil, // http3.Transport keeps no idle-only pool to drop
	},
	{
		name:  "doq",
		start: transporttest.StartDoQ,
		newEx: func(t *testing.T, addr netip.AddrPort, base *tls.Config) Exchanger {
			x, err := NewDoQ(addr, base, DoQConfig{})
			if err != nil {
				t.Fatal(err)
			}
			return x
		},
		drop: func(x Exchanger) {
			d := x.(*DoQ)
			d.mu.Lock()
			c := d.cur
			d.mu.Unlock()
			c.CloseWithError(doqNoError, "")
			<-c.Context().Done()
		},
	},
}

// encClient builds the client TLS configuration for a test server: the
// test CA as roots and the given server name (the address when empty).
func encClient(t *testing.T, s *transporttest.EncryptedServer, opts TLSOptions) *tls.Config {
	t.Helper()
	if opts.RootCAs == nil && len(opts.Pins) == 0 {
		opts.RootCAs = s.CA.Pool
	}
	conf, err := ClientTLSConfig(opts, Endpoint{Addr: s.Addr().Addr(), Port: s.Addr().Port()})
	if err != nil {
		t.Fatal(err)
	}
	return conf
}

func encExchanger(t *testing.T, k encKind, s *transporttest.EncryptedServer, opts TLSOptions) Exchanger {
	t.Helper()
	x := k.newEx(t, s.Addr(), encClient(t, s, opts))
	t.Cleanup(func() { x.Close() })
	return x
}

func encAddr(ip string) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(ip), 0) }

// TestEncryptedAnswer: every exchanger answers over both families, sends
// ID 0 on the wire for DoH and DoQ (RFC 8484 §4.1, RFC 9250 §4.2.1) and
// gives the reply the caller's ID.
func TestEncryptedAnswer(t *testing.T) {
	t.Parallel()
	for _, k := range encKinds {
		for _, fam := range wireFamilies {
			t.Run(k.name+"/"+fam.name, func(t *testing.T) {
				t.Parallel()
				var wireID, wireLen atomic.Int32
				var padded atomic.Bool
				s := k.start(t, transporttest.ServerConfig{Addr: encAddr(fam.ip), Handler: func(ctx context.Context, q *dns.Msg) *dns.Msg {
					wireID.Store(int32(q.Id))
					wireLen.Store(int32(q.Len())) // one name: nothing to compress
					if opt := q.IsEdns0(); opt != nil {
						for _, o := range opt.Option {
							padded.Store(padded.Load() || o.Option() == dns.EDNS0PADDING)
						}
					}
					return transporttest.Answer(ctx, q)
				}})
				x := encExchanger(t, k, s, TLSOptions{})
				q := wireQuery("answer.example.", dns.TypeA)
				q.Id = 0xbeef
				r, err := x.Exchange(wireCtx(t, 5*time.Second), q)
				if err != nil {
					t.Fatal(err)
				}
				if r.Id != 0xbeef || q.Id != 0xbeef || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
					t.Fatalf("reply id %#x (query %#x), answer %v", r.Id, q.Id, r.Answer)
				}
				if k.name != "dot" && wireID.Load() != 0 {
					t.Errorf("message id on the wire %#x, want 0", wireID.Load())
				}
				// RFC 8467 §4.1: queries padded to 128-octet blocks.
				if !padded.Load() || wireLen.Load()%QueryPaddingBlock != 0 {
					t.Errorf("query of %d bytes, padding option %v: want padding to a multiple of %d", wireLen.Load(), padded.Load(), QueryPaddingBlock)
				}
			})
		}
	}
}

// TestEncryptedOneConnection: 100 concurrent queries on one exchanger
// share one connection (RFC 7766 pipelining for DoT, streams for DoH and
// DoQ), and the replies go to the right callers.
func TestEncryptedOneConnection(t *testing.T) {
	t.Parallel()
	const n = 100
	for _, k := range encKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			s := k.start(t, transporttest.ServerConfig{Handler: func(_ context.Context, q *dns.Msg) *dns.Msg {
				m := new(dns.Msg).SetReply(q)
				m.Answer = []dns.RR{wireRR(q.Question[0].Name + " 60 IN TXT " + q.Question[0].Name)}
				return m
			}})
			x := encExchanger(t, k, s, TLSOptions{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					name := fmt.Sprintf("q%d.example.", i)
					q := wireQuery(name, dns.TypeTXT)
					q.Id = uint16(i)
					r, err := x.Exchange(wireCtx(t, 10*time.Second), q)
					if err != nil {
						t.Errorf("query %d: %v", i, err)
						return
					}
					if got := r.Answer[0].(*dns.TXT).Txt[0]; got != name || r.Id != q.Id {
						t.Errorf("query %d: got %s id %d", i, got, r.Id)
					}
				})
			}
			wg.Wait()
			if st := s.Stats(); st.Conns != 1 || st.Queries != n {
				t.Errorf("server stats %+v, want 1 connection and %d queries", st, n)
			}
		})
	}
}

// TestEncryptedResume: when the connection goes away, the next query dials
// again and resumes the TLS session.
func TestEncryptedResume(t *testing.T) {
	t.Parallel()
	for _, k := range encKinds {
		if k.drop == nil {
			continue
		}
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			s := k.start(t, transporttest.ServerConfig{})
			x := encExchanger(t, k, s, TLSOptions{})
			for i := range 2 {
				if _, err := x.Exchange(wireCtx(t, 5*time.Second), wireQuery("resume.example.", dns.TypeA)); err != nil {
					t.Fatalf("query %d: %v", i, err)
				}
				if i == 0 {
					k.drop(x)
				}
			}
			if st := s.Stats(); st.Conns != 2 || st.Handshakes != 2 || st.Resumed != 1 {
				t.Errorf("server stats %+v, want 2 connections, the second resumed", st)
			}
		})
	}
}

// TestEncryptedVerify: the server certificate is checked against the name
// or the pins, and a failure is ClassNetwork.
func TestEncryptedVerify(t *testing.T) {
	t.Parallel()
	other := transporttest.NewCA(t)
	pin := func(s string) SPKIPin {
		p, err := ParseSPKIPin(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name string
		opts func(ca *transporttest.CA) TLSOptions
		want Class
	}{
		{"IP SAN", func(*transporttest.CA) TLSOptions { return TLSOptions{} }, ClassOK},
		{"server name", func(*transporttest.CA) TLSOptions { return TLSOptions{ServerName: transporttest.TestServerName} }, ClassOK},
		{"wrong server name", func(*transporttest.CA) TLSOptions { return TLSOptions{ServerName: "wrong.test"} }, ClassNetwork},
		{"unknown CA", func(*transporttest.CA) TLSOptions { return TLSOptions{RootCAs: other.Pool} }, ClassNetwork},
		{"leaf pin", func(ca *transporttest.CA) TLSOptions { return TLSOptions{Pins: []SPKIPin{pin(ca.LeafPin())}} }, ClassOK},
		{"CA pin among others", func(ca *transporttest.CA) TLSOptions {
			return TLSOptions{Pins: []SPKIPin{pin(other.CAPin()), pin(ca.CAPin())}}
		}, ClassOK},
		{"pin mismatch", func(*transporttest.CA) TLSOptions { return TLSOptions{Pins: []SPKIPin{pin(other.LeafPin())}} }, ClassNetwork},
		{"pin match, wrong name", func(ca *transporttest.CA) TLSOptions {
			return TLSOptions{ServerName: "wrong.test", Pins: []SPKIPin{pin(ca.LeafPin())}}
		}, ClassNetwork},
	}
	for _, k := range encKinds {
		for _, tc := range cases {
			t.Run(k.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				s := k.start(t, transporttest.ServerConfig{})
				x := encExchanger(t, k, s, tc.opts(s.CA))
				_, err := x.Exchange(wireCtx(t, 5*time.Second), wireQuery("verify.example.", dns.TypeA))
				wantClass(t, err, tc.want)
				if tc.want != ClassOK && s.Stats().Queries != 0 {
					t.Errorf("the server got a query over an unverified connection")
				}
			})
		}
	}
}

// TestEncryptedRestart: after the server stops, queries fail as
// ClassNetwork; once it is back on the same address the next query dials
// again and is answered.
func TestEncryptedRestart(t *testing.T) {
	t.Parallel()
	for _, k := range encKinds {
		for _, fam := range wireFamilies {
			t.Run(k.name+"/"+fam.name, func(t *testing.T) {
				t.Parallel()
				s := k.start(t, transporttest.ServerConfig{Addr: encAddr(fam.ip)})
				x := encExchanger(t, k, s, TLSOptions{})
				if _, err := x.Exchange(wireCtx(t, 5*time.Second), wireQuery("before.example.", dns.TypeA)); err != nil {
					t.Fatal(err)
				}
				s.Stop()
				_, err := x.Exchange(wireCtx(t, 2*time.Second), wireQuery("down.example.", dns.TypeA))
				if c := Classify(err); c != ClassNetwork && c != ClassTimeout {
					t.Fatalf("server down: %v, class %s, want network (or timeout for QUIC)", err, c)
				}
				s2 := k.start(t, transporttest.ServerConfig{Addr: s.Addr(), CA: s.CA})
				if _, err := x.Exchange(wireCtx(t, 5*time.Second), wireQuery("after.example.", dns.TypeA)); err != nil {
					t.Fatalf("after restart: %v (restarted server %+v, first %+v)", err, s2.Stats(), s.Stats())
				}
				if st := s2.Stats(); st.Conns != 1 {
					t.Errorf("restarted server stats %+v, want one connection", st)
				}
			})
		}
	}
}

// TestEncryptedTimeout: a server that never answers gives ClassTimeout at
// the deadline; a caller that gives up gets ClassCanceled; the exchanger
// still answers afterwards.
func TestEncryptedTimeout(t *testing.T) {
	t.Parallel()
	for _, k := range encKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			s := k.start(t, transporttest.ServerConfig{Handler: func(ctx context.Context, q *dns.Msg) *dns.Msg {
				if q.Question[0].Name == "lost.example." {
					return nil
				}
				return transporttest.Answer(ctx, q)
			}})
			x := encExchanger(t, k, s, TLSOptions{})
			if _, err := x.Exchange(wireCtx(t, 5*time.Second), wireQuery("warm.example.", dns.TypeA)); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err := x.Exchange(wireCtx(t, 200*time.Millisecond), wireQuery("lost.example.", dns.TypeA))
			wantClass(t, err, ClassTimeout)
			if el := time.Since(start); el > wireSlack {
				t.Errorf("timed out after %v", el)
			}
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(50*time.Millisecond, cancel)
			_, err = x.Exchange(ctx, wireQuery("lost.example.", dns.TypeA))
			wantClass(t, err, ClassCanceled)
			if _, err := x.Exchange(wireCtx(t, 5*time.Second), wireQuery("after.example.", dns.TypeA)); err != nil {
				t.Fatalf("after a timeout: %v", err)
			}
		})
	}
}

// TestEncryptedClose: Close fails queries under way and later ones with
// ClassCanceled.
func TestEncryptedClose(t *testing.T) {
	t.Parallel()
	for _, k := range encKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			got := make(chan struct{}, 1)
			s := k.start(t, transporttest.ServerConfig{Handler: func(context.Context, *dns.Msg) *dns.Msg {
				got <- struct{}{}
				return nil
			}})
			x := k.newEx(t, s.Addr(), encClient(t, s, TLSOptions{}))
			errc := make(chan error, 1)
			go func() {
				_, err := x.Exchange(wireCtx(t, 30*time.Second), wireQuery("pending.example.", dns.TypeA))
				errc <- err
			}()
			<-got
			x.Close()
			select {
			case err := <-errc:
				wantClass(t, err, ClassCanceled)
			case <-time.After(wireSlack):
				t.Fatal("pending query still running after Close")
			}
			_, err := x.Exchange(wireCtx(t, time.Second), wireQuery("late.example.", dns.TypeA))
			wantClass(t, err, ClassCanceled)
			if err := x.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

// TestEncryptedUpstream: an upstream built from a tls://, https:// or
// quic:// URL with a literal address has one path, with the scheme as its
// protocol and its own health, and it answers through that path. The
// TLS settings come from the configuration fields, as the server builds
// them.
func TestEncryptedUpstream(t *testing.T) {
	t.Parallel()
	kinds := []struct {
		scheme, path string
		kind         encKind
	}{
		{"tls", "", encKinds[0]},
		{"https", "/dns-query", encKinds[1]},
		{"quic", "", encKinds[3]},
	}
	for _, k := range kinds {
		for _, fam := range wireFamilies {
			t.Run(k.scheme+"/"+fam.name, func(t *testing.T) {
				t.Parallel()
				s := k.kind.start(t, transporttest.ServerConfig{Addr: encAddr(fam.ip)})
				spec := UpstreamSpec{Name: "enc", URL: k.scheme + "://" + s.Addr().String() + k.path, CAFile: s.CA.WritePEM(t), TLSServerName: transporttest.TestServerName}
				if err := (&Config{Upstreams: []UpstreamSpec{spec}}).Validate(); err != nil {
					t.Fatal(err)
				}
				ep, err := ParseEndpoint(spec.URL)
				if err != nil {
					t.Fatal(err)
				}
				opts, err := spec.TLSOptions()
				if err != nil {
					t.Fatal(err)
				}
				reg := NewRegistry(HealthConfig{}, nil)
				u, err := NewUpstream(UpstreamConfig{Name: spec.Name, Endpoint: ep, TLS: opts}, UpstreamDeps{Registry: reg})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { u.Close() })
				paths := u.Paths()
				want := PathID{Upstream: "enc", Proto: k.scheme, Addr: s.Addr()}
				if len(paths) != 1 || paths[0].ID != want || paths[0].Health == nil || reg.Len() != 1 {
					t.Fatalf("paths %v (registry %d), want one: %v", paths, reg.Len(), want)
				}
				if _, err := paths[0].Exchanger.Exchange(wireCtx(t, 5*time.Second), wireQuery("up.example.", dns.TypeA)); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
	t.Run("bad tls options fail the upstream", func(t *testing.T) {
		ep, _ := ParseEndpoint("tls://[::1]")
		ep.Addr = netip.Addr{} // neither host nor address: no name to verify
		ep.Host = ""
		if _, err := NewUpstream(UpstreamConfig{Name: "bad", Endpoint: ep}, UpstreamDeps{Registry: NewRegistry(HealthConfig{}, nil)}); err == nil {
			t.Fatal("no error")
		}
	})
}

// TestEncryptedNoLeak: after Close, nothing an encrypted exchanger started
// is left running, and its connections are closed: the server's
// goroutines for them end while the server itself keeps running. It does
// not run in parallel, so the goroutine count is its own.
func TestEncryptedNoLeak(t *testing.T) {
	count := func() int {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		return strings.Count(string(buf), "\n\ngoroutine ") + 1
	}
	for _, k := range encKinds {
		t.Run(k.name, func(t *testing.T) {
			lost := make(chan struct{}, 2)
			s := k.start(t, transporttest.ServerConfig{Handler: func(ctx context.Context, q *dns.Msg) *dns.Msg {
				if q.Question[0].Name == "lost.example." {
					lost <- struct{}{}
					return nil
				}
				return transporttest.Answer(ctx, q)
			}})
			before := count()
			x := k.newEx(t, s.Addr(), encClient(t, s, TLSOptions{}))
			for range 3 {
				if _, err := x.Exchange(wireCtx(t, 5*time.Second), wireQuery("leak.example.", dns.TypeA)); err != nil {
					t.Fatal(err)
				}
			}
			if k.drop != nil {
				k.drop(x)
			}
			x.Exchange(wireCtx(t, 100*time.Millisecond), wireQuery("lost.example.", dns.TypeA))
			<-lost
			done := make(chan struct{})
			go func() {
				defer close(done)
				x.Exchange(wireCtx(t, 10*time.Second), wireQuery("lost.example.", dns.TypeA))
			}()
			<-lost // pending on the server when Close comes
			x.Close()
			<-done
			deadline := time.Now().Add(wireSlack)
			for {
				n := count()
				if n <= before {
					return
				}
				if time.Now().After(deadline) {
					buf := make([]byte, 1<<20)
					t.Fatalf("%d goroutines, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
