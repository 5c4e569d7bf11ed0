package listen

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/internal/doqclient"
)

// TestDoQ0RTT resumes a session and sends two queries in 0-RTT while a
// proxy holds the server's packets back, so the handshake cannot complete
// for a while: the replay-safe A query is served at once, from 0-RTT; the
// zone transfer, which is not replay-safe, only once the handshake is
// complete (RFC 9250 §4.5).
func TestDoQ0RTT(t *testing.T) {
	t.Parallel()
	const hold = 300 * time.Millisecond
	type served struct {
		qtype    uint16
		complete bool
		resumed  bool
		at       time.Time
	}
	seen := make(chan served, 4)
	h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		seen <- served{req.Question().Qtype, req.TLS.HandshakeComplete, req.TLS.DidResume, time.Now()}
		return answerA(ctx, req)
	}}
	l := startDoQ(t, testConfig(t, fam4, h))
	cache := &notifyCache{ClientSessionCache: tls.NewLRUClientSessionCache(4), stored: make(chan struct{}, 1)}
	tlsConf := l.pki.clientTLS("dns.test")
	tlsConf.ClientSessionCache = cache
	exchange := func(c *doqclient.Client, q *dns.Msg) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := c.Exchange(ctx, q)
		return err
	}

	// A first connection leaves a session ticket.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	first, err := doqclient.Dial(ctx, l.Addr().String(), doqclient.Config{TLS: tlsConf})
	if err != nil {
		t.Fatal(err)
	}
	if err := exchange(first, query("warmup.example.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	<-seen
	select {
	case <-cache.stored:
	case <-ctx.Done():
		t.Fatal("no session ticket")
	}
	first.Close()
	// Until the server has seen the first connection go, its address
	// holds a connection and a new handshake from it would be asked to
	// validate the address first (a Retry, one held-back round trip).
	if !eventually(2*time.Second, func() bool { return l.openConnCount() == 0 }) {
		t.Fatal("the first connection is still open on the server")
	}

	p := newUDPProxy(t, l.Addr().String())
	p.delayToClient.Store(int64(hold))
	start := time.Now()
	c, err := doqclient.Dial(ctx, p.addr(), doqclient.Config{TLS: tlsConf, Early: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errs := make(chan error, 2)
	for _, qt := range []uint16{dns.TypeAXFR, dns.TypeA} {
		go func() { errs <- exchange(c, query("example.org.", qt)) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if !c.Conn().ConnectionState().Used0RTT {
		t.Fatal("the server did not accept 0-RTT")
	}
	got := map[uint16]served{}
	for range 2 {
		s := <-seen
		got[s.qtype] = s
	}
	a, axfr := got[dns.TypeA], got[dns.TypeAXFR]
	if a.complete || !a.resumed || a.at.Sub(start) >= hold {
		t.Errorf("A served %v after dialing, handshake complete %v, resumed %v; want from 0-RTT before %v",
			a.at.Sub(start), a.complete, a.resumed, hold)
	}
	if !axfr.complete || axfr.at.Sub(start) < hold {
		t.Errorf("AXFR served %v after dialing, handshake complete %v; want after it completed",
			axfr.at.Sub(start), axfr.complete)
	}
}

// TestDoQReplaySafe checks which queries may be answered from 0-RTT.
func TestDoQReplaySafe(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		qtype  uint16
		opcode int
		safe   bool
	}{
		{dns.TypeA, dns.OpcodeQuery, true},
		{dns.TypeAAAA, dns.OpcodeQuery, true},
		{dns.TypeHTTPS, dns.OpcodeQuery, true},
		{dns.TypeAXFR, dns.OpcodeQuery, false},
		{dns.TypeIXFR, dns.OpcodeQuery, false},
		{dns.TypeSOA, dns.OpcodeUpdate, false},
		{dns.TypeSOA, dns.OpcodeNotify, false},
	} {
		q := query("example.org.", tt.qtype)
		q.Opcode = tt.opcode
		if got := replaySafe(q); got != tt.safe {
			t.Errorf("%s opcode %s: safe %v, want %v", dns.TypeToString[tt.qtype], dns.OpcodeToString[tt.opcode], got, tt.safe)
		}
	}
}
