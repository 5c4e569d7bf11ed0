package listen

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// bigAnswer answers with 60 TXT records, about 5 KB.
func bigAnswer(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetReply(req.Msg)
	for i := range 60 {
		m.Answer = append(m.Answer, mustRR(fmt.Sprintf(
			`big.example. 60 IN TXT "record %02d %s"`, i, strings.Repeat("x", 64))))
	}
	return m, nil
}

func TestUDPTruncation(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, fam4, &fakeHandler{t: t, serve: bigAnswer})
	cfg.Metrics = NewMetrics(reg)
	udp := start(t, "udp", cfg)
	tcp := start(t, "tcp", cfg)
	tests := []struct {
		name    string
		netw    string
		query   *dns.Msg
		maxSize int
		whole   bool
	}{
		{"udp without EDNS", "udp", query("big.example.", dns.TypeTXT), 512, false},
		{"udp with EDNS 1232", "udp", queryEDNS("big.example.", dns.TypeTXT, 1232, false), 1232, false},
		{"udp with EDNS below 512", "udp", queryEDNS("big.example.", dns.TypeTXT, 100, false), 512, false},
		{"tcp", "tcp", query("big.example.", dns.TypeTXT), dns.MaxMsgSize, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := udp
			if tt.netw == "tcp" {
				s = tcp
			}
			wire, err := tt.query.Pack()
			if err != nil {
				t.Fatal(err)
			}
			b, err := exchangeRaw(tt.netw, s.Addr(), wire, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > tt.maxSize {
				t.Errorf("reply of %d bytes, limit %d", len(b), tt.maxSize)
			}
			r := new(dns.Msg)
			if err := r.Unpack(b); err != nil {
				t.Fatal(err)
			}
			if tt.whole {
				if r.Truncated || len(r.Answer) != 60 {
					t.Errorf("TC=%v with %d records, want all 60", r.Truncated, len(r.Answer))
				}
				return
			}
			if !r.Truncated || len(r.Answer)+len(r.Ns) != 0 || len(r.Question) != 1 {
				t.Errorf("TC=%v with %d records, want TC, the question and no record", r.Truncated, len(r.Answer)+len(r.Ns))
			}
			if len(b) > len(wire) {
				t.Errorf("truncated reply of %d bytes to a query of %d", len(b), len(wire))
			}
		})
	}
	if got := metricValue(t, reg, "dnsedge_listener_truncated_total", map[string]string{"listener": "udp"}); got != 3 {
		t.Errorf("truncated_total = %v, want 3", got)
	}
}

// TestUDPRejects checks what comes back for messages that never reach the
// handler. Each raw message is followed by a good query on the same
// socket, so the junk was read before that answer arrives.
func TestUDPRejects(t *testing.T) {
	t.Parallel()
	good := query("example.org.", dns.TypeA)
	good.Id = 4242
	goodWire, _ := good.Pack()
	header := func(id, bits, qd, an, ns, ar uint16) []byte {
		return []byte{byte(id >> 8), byte(id), byte(bits >> 8), byte(bits), byte(qd >> 8), byte(qd),
			byte(an >> 8), byte(an), byte(ns >> 8), byte(ns), byte(ar >> 8), byte(ar)}
	}
	update := new(dns.Msg)
	update.SetUpdate("example.org.")
	update.Id = 7
	updateWire, _ := update.Pack()
	badvers := queryEDNS("example.org.", dns.TypeA, 1232, true)
	badvers.IsEdns0().SetVersion(1)
	badversWire, _ := badvers.Pack()
	twoOPT := queryEDNS("example.org.", dns.TypeA, 1232, false)
	twoOPT.Extra = append(twoOPT.Extra, twoOPT.Extra[0])
	twoOPTWire, _ := twoOPT.Pack()

	tests := []struct {
		name   string
		wire   []byte
		rcode  int // -1: no reply
		reason string
	}{
		{"five bytes", []byte{1, 2, 3, 4, 5}, -1, "short"},
		{"empty", nil, -1, "short"},
		{"response", append(header(9, 1<<15, 1, 0, 0, 0), goodWire[12:]...), -1, "response"},
		{"sane header garbage body", append(header(9, 1<<8, 1, 0, 0, 0), 0xff, 0xff, 0xff, 0xff), dns.RcodeFormatError, ""},
		{"header only", header(9, 0, 0, 0, 0, 0), dns.RcodeFormatError, ""},
		{"two questions", append(header(9, 0, 2, 0, 0, 0), append(goodWire[12:], goodWire[12:]...)...), dns.RcodeFormatError, ""},
		{"answer in query", append(header(9, 0, 1, 1, 0, 0), goodWire[12:]...), dns.RcodeFormatError, ""},
		{"two OPT", twoOPTWire, dns.RcodeFormatError, ""},
		{"opcode UPDATE", updateWire, dns.RcodeNotImplemented, ""},
		{"EDNS version 1", badversWire, dns.RcodeBadVers, ""},
	}
	for _, f := range []family{fam4, fam6} {
		for _, tt := range tests {
			t.Run(f.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				needFamily(t, f)
				reg := prometheus.NewRegistry()
				cfg := testConfig(t, f, &fakeHandler{t: t, serve: answerA})
				cfg.Metrics = NewMetrics(reg)
				s := start(t, "udp", cfg)
				c, err := net.Dial("udp", s.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Write(tt.wire); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Write(goodWire); err != nil {
					t.Fatal(err)
				}
				// The rejection and the good answer come in any order.
				buf := make([]byte, 65535)
				var r *dns.Msg
				var n int
				for range 2 {
					if n, err = c.Read(buf); err != nil {
						t.Fatal(err)
					}
					r = new(dns.Msg)
					if err := r.Unpack(buf[:n]); err != nil {
						t.Fatalf("unpack reply: %v", err)
					}
					if tt.rcode == -1 || r.Id != good.Id {
						break
					}
				}
				if tt.rcode == -1 {
					if r.Id != good.Id || r.Rcode != dns.RcodeSuccess {
						t.Fatalf("first reply is %d %s, want the good query's answer", r.Id, dns.RcodeToString[r.Rcode])
					}
					labels := map[string]string{"listener": "udp", "reason": tt.reason}
					if got := metricValue(t, reg, "dnsedge_listener_dropped_total", labels); got != 1 {
						t.Errorf("dropped_total%v = %v, want 1", labels, got)
					}
					return
				}
				if r.Rcode != tt.rcode || !r.Response {
					t.Errorf("rcode %s QR=%v, want %s", dns.RcodeToString[r.Rcode], r.Response, dns.RcodeToString[tt.rcode])
				}
				if n > len(tt.wire) {
					t.Errorf("reply of %d bytes to %d bytes of junk", n, len(tt.wire))
				}
				if wantID := uint16(tt.wire[0])<<8 | uint16(tt.wire[1]); r.Id != wantID {
					t.Errorf("reply ID %d, want %d", r.Id, wantID)
				}
			})
		}
	}
}

// TestUDPOverload checks that queries beyond MaxConcurrent are dropped and
// counted.
func TestUDPOverload(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		if calls.Add(1) == 1 {
			close(started)
			select { // a handler waits under ctx (pipeline.Handler)
			case <-release:
			case <-ctx.Done():
			}
		}
		return answerA(ctx, req)
	}}
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, fam4, h)
	cfg.MaxConcurrent = 1
	cfg.Metrics = NewMetrics(reg)
	dropped := make(chan struct{}, 1)
	km := cfg.Metrics.kind(pipeline.KindUDP)
	km.dropped[reasonOverload] = signalCounter{km.dropped[reasonOverload], dropped}
	s := start(t, "udp", cfg)
	c, err := net.Dial("udp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	send := func(id uint16) {
		q := query("example.org.", dns.TypeA)
		q.Id = id
		wire, _ := q.Pack()
		if _, err := c.Write(wire); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() uint16 { return readID(t, c) }
	send(1)
	<-started
	send(2) // dropped: query 1 holds the only slot
	select {
	case <-dropped:
	case <-time.After(2 * time.Second):
		t.Fatal("query 2 not dropped")
	}
	close(release)
	if id := recv(); id != 1 {
		t.Fatalf("reply to %d, want 1", id)
	}
	labels := map[string]string{"listener": "udp", "reason": "overload"}
	if got := metricValue(t, reg, "dnsedge_listener_dropped_total", labels); got != 1 {
		t.Errorf("dropped_total%v = %v, want 1", labels, got)
	}
}

// signalCounter is a counter that also reports each Inc on a channel.
type signalCounter struct {
	prometheus.Counter
	c chan<- struct{}
}

func (s signalCounter) Inc() {
	s.Counter.Inc()
	s.c <- struct{}{}
}

// TestUDPPktinfo covers the path of sockets bound to a wildcard address,
// where each reply must leave from the address its query was sent to.
func TestUDPPktinfo(t *testing.T) {
	t.Parallel()
	for _, f := range []family{fam4, fam6} {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			needFamily(t, f)
			locals := make(chan pipeline.Request, 1)
			h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
				locals <- *req
				return answerA(ctx, req)
			}}
			l, err := listenUDP(testConfig(t, f, h), udpOptions{pktinfo: true})
			if err != nil {
				t.Fatal(err)
			}
			s := serve(t, l)
			// A connected client socket only takes replies from s.Addr().
			r, err := exchange("udp", s.Addr(), query("example.org.", dns.TypeA), 2*time.Second)
			wantRcode(t, r, err, dns.RcodeSuccess)
			req := <-locals
			if req.Local != s.Addr() {
				t.Errorf("Local = %v, want %v", req.Local, s.Addr())
			}
			if req.Client.Addr() != s.Addr().Addr() || req.Client.Port() == 0 {
				t.Errorf("Client = %v", req.Client)
			}
			if req.Listener != pipeline.KindUDP || req.MaxSize != 512 || req.Received.IsZero() {
				t.Errorf("request = %+v", req)
			}
		})
	}
}

// TestUDPAddrInUse checks that binding an address another listener holds
// fails, although the sockets use SO_REUSEPORT.
func TestUDPAddrInUse(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, fam4, &fakeHandler{t: t})
	first, err := ListenUDP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	cfg.Addr = first.Addr()
	if second, err := ListenUDP(cfg); err == nil {
		second.Close()
		t.Fatal("second listener on the same address succeeded")
	}
}

func TestServeAfterClose(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"udp", "tcp"} {
		t.Run(kind, func(t *testing.T) {
			cfg := testConfig(t, fam4, &fakeHandler{t: t})
			var s server
			var err error
			if kind == "udp" {
				s, err = ListenUDP(cfg)
			} else {
				s, err = ListenTCP(cfg)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Serve(); err != ErrClosed {
				t.Errorf("Serve after Close = %v, want ErrClosed", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("second Close = %v", err)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no address", Config{Handler: func() pipeline.Handler { return nil }}, "not valid"},
		{"no handler", Config{Addr: fam4.addr}, "no handler"},
		{"negative timeout", Config{Addr: fam4.addr, Handler: func() pipeline.Handler { return nil }, Limits: Limits{QueryTimeout: -1}}, "negative"},
		{"negative conns", Config{Addr: fam4.addr, Handler: func() pipeline.Handler { return nil }, Limits: Limits{MaxConns: -1}}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errU := ListenUDP(tt.cfg)
			_, errT := ListenTCP(tt.cfg)
			for _, err := range []error{errU, errT} {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %v, want one containing %q", err, tt.want)
				}
			}
		})
	}
}
