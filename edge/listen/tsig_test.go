package listen

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/edge/tsig"
)

const (
	tsigTestKey    = "listen.key."
	tsigTestSecret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
)

// TestSignedReplies: on every listener kind the reply to a signed query
// is signed by the listener, chained to the query's MAC, on the final
// packed message, and a UDP reply truncated to the client's size is
// signed too (RFC 8945 §5.3).
func TestSignedReplies(t *testing.T) {
	t.Parallel()
	kr, err := tsig.New(tsig.Config{Keys: []tsig.KeySpec{{Name: tsigTestKey, Secret: tsigTestSecret}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	big := func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		for i := range 8 {
			m.Answer = append(m.Answer, mustRR(fmt.Sprintf("example.org. 60 IN TXT \"%02d %s\"", i, strings.Repeat("x", 90))))
		}
		return m, nil
	}
	h := tsig.NewStage(kr, nil, nil).Middleware(pipeline.HandlerFunc(big))
	signed := func(t *testing.T, size uint16) (string, []byte) {
		q := new(dns.Msg)
		q.SetQuestion("example.org.", dns.TypeTXT)
		q.SetEdns0(size, false)
		q.SetTsig(tsigTestKey, dns.HmacSHA256, 300, time.Now().Unix())
		wire, mac, err := dns.TsigGenerate(q, tsigTestSecret, "", false)
		if err != nil {
			t.Fatal(err)
		}
		return mac, wire
	}
	check := func(t *testing.T, mac string, reply []byte, truncated bool) {
		t.Helper()
		r := new(dns.Msg)
		if err := r.Unpack(reply); err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeSuccess {
			t.Errorf("rcode %s:\n%v", dns.RcodeToString[r.Rcode], r)
		}
		if r.Truncated != truncated {
			t.Errorf("TC %v, want %v", r.Truncated, truncated)
		}
		if !truncated && len(r.Answer) != 8 {
			t.Errorf("%d answers, want 8", len(r.Answer))
		}
		if r.IsTsig() == nil {
			t.Fatalf("reply not signed:\n%v", r)
		}
		if err := dns.TsigVerify(reply, tsigTestSecret, mac, false); err != nil {
			t.Errorf("reply does not verify: %v", err)
		}
	}
	for _, kind := range []string{"udp", "tcp", "dot"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			s := start(t, kind, testConfig(t, fam4, h))
			q, wire := signed(t, 4096)
			reply, err := exchangeRaw(kind, s.Addr(), wire, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			check(t, q, reply, false)
			if kind == "udp" {
				q, wire := signed(t, 512)
				reply, err := exchangeRaw(kind, s.Addr(), wire, 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if len(reply) > 512 {
					t.Errorf("truncated reply of %d bytes, over the client's 512", len(reply))
				}
				check(t, q, reply, true)
			}
		})
	}
	t.Run("doh", func(t *testing.T) {
		t.Parallel()
		pki := testTLS(t)
		l := startDoH(t, dohTestConfig(t, fam4, h, pki))
		c := newDoHClient(t, "h2", l, pki.roots)
		q, wire := signed(t, 4096)
		res := c.do(t, "POST", "/dns-query", map[string]string{"Content-Type": dnsMessageType}, wire)
		dohDNSReply(t, res)
		check(t, q, res.body, false)
	})
	t.Run("doq", func(t *testing.T) {
		t.Parallel()
		s := startDoQ(t, testConfig(t, fam4, h))
		c := s.dial(t, "")
		q, wire := signed(t, 4096)
		wire[0], wire[1] = 0, 0 // DoQ queries carry ID 0; the MAC covers the original ID in the TSIG
		reply, err := rawExchange(c.Conn(), frameOf(wire), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		check(t, q, reply, false)
	})
}

// TestRequireTSIGListener: a listener with RequireTSIG marks its
// queries, and the TSIG stage refuses the unsigned ones; another
// listener does not.
func TestRequireTSIGListener(t *testing.T) {
	t.Parallel()
	for _, require := range []bool{true, false} {
		t.Run(fmt.Sprint(require), func(t *testing.T) {
			t.Parallel()
			h := tsig.NewStage(nil, nil, func(req *pipeline.Request) bool { return req.RequireTSIG }).Middleware(
				&fakeHandler{t: t, serve: answerA})
			cfg := testConfig(t, fam4, h)
			cfg.RequireTSIG = require
			s := start(t, "udp", cfg)
			r, err := exchange("udp", s.Addr(), query("example.org.", dns.TypeA), 2*time.Second)
			want := dns.RcodeSuccess
			if require {
				want = dns.RcodeRefused
			}
			wantRcode(t, r, err, want)
		})
	}
}
