package listen

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// TestRequestWire checks that every listener hands the handler the query's
// bytes as they arrived (req.Wire), and none for the DoH JSON API, whose
// query never had a wire form.
func TestRequestWire(t *testing.T) {
	t.Parallel()
	q := queryEDNS("Example.ORG.", dns.TypeAAAA, 1232, true)
	wire, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	doqWire, err := func() ([]byte, error) { c := q.Copy(); c.Id = 0; return c.Pack() }()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want []byte // nil: no wire
		send func(t *testing.T, h *fakeHandler)
	}{
		{name: "udp", want: wire, send: func(t *testing.T, h *fakeHandler) {
			s := start(t, "udp", testConfig(t, fam4, h))
			if _, err := exchangeRaw("udp", s.Addr(), wire, 2*time.Second); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "tcp", want: wire, send: func(t *testing.T, h *fakeHandler) {
			s := start(t, "tcp", testConfig(t, fam4, h))
			if _, err := exchangeRaw("tcp", s.Addr(), wire, 2*time.Second); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "dot", want: wire, send: func(t *testing.T, h *fakeHandler) {
			s := start(t, "dot", testConfig(t, fam4, h))
			if _, err := exchangeRaw("dot", s.Addr(), wire, 2*time.Second); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "doh post", want: wire, send: func(t *testing.T, h *fakeHandler) {
			pki := testTLS(t)
			c := newDoHClient(t, "h2", startDoH(t, dohTestConfig(t, fam4, h, pki)), pki.roots)
			dohDNSReply(t, c.post(t, DefaultHTTPPath, q.Copy())) // Pack writes into q's OPT: one each, the subtests run in parallel
		}},
		{name: "doh get", want: wire, send: func(t *testing.T, h *fakeHandler) {
			pki := testTLS(t)
			c := newDoHClient(t, "h1", startDoH(t, dohTestConfig(t, fam4, h, pki)), pki.roots)
			dohDNSReply(t, c.get(t, DefaultHTTPPath, q.Copy()))
		}},
		{name: "doh json", send: func(t *testing.T, h *fakeHandler) {
			pki := testTLS(t)
			c := newDoHClient(t, "h2", startDoH(t, dohTestConfig(t, fam4, h, pki)), pki.roots)
			if res := c.do(t, http.MethodGet, DefaultHTTPPath+"?name=example.org&type=AAAA", nil, nil); res.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", res.StatusCode, res.body)
			}
		}},
		{name: "doq", want: doqWire, send: func(t *testing.T, h *fakeHandler) {
			cfg := testConfig(t, fam4, h)
			c := startDoQ(t, cfg).dial(t, "dns.test")
			if _, err := rawExchange(c.Conn(), frameOf(doqWire), 5*time.Second); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			needFamily(t, fam4)
			got := make(chan []byte, 1)
			h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
				// Wire is lent for the call only: keep a copy.
				got <- bytes.Clone(req.Wire)
				return answerA(ctx, req)
			}}
			tt.send(t, h)
			if w := <-got; !bytes.Equal(w, tt.want) {
				t.Errorf("Wire = %x, want %x", w, tt.want)
			}
		})
	}
}
