package validate

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/middleware"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/transport"
	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// TestFetchQuery: the fetch is an internal query with RD, DO and CD set
// to the handler of the latest binding still alive.
func TestFetchQuery(t *testing.T) {
	t.Parallel()
	f := &fetcher{now: fixedNow}
	if _, err := f.Fetch(context.Background(), "example.", dns.TypeDNSKEY); !errors.Is(err, errNoUpstream) {
		t.Errorf("unbound fetch: %v", err)
	}
	var gotKind pipeline.Kind
	answer := func(name string) *fakeNext {
		return &fakeNext{t: t, serve: func(q *dns.Msg) (*dns.Msg, error) {
			m := new(dns.Msg).SetReply(q)
			m.Answer = rrs(t, name+" 3600 IN TXT \"x\"")
			return m, nil
		}}
	}
	older, newer := answer("older."), answer("newer.")
	kind := func(next *fakeNext) pipeline.Handler {
		return pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
			gotKind = req.Listener
			return next.ServeDNS(ctx, req)
		})
	}
	unbindOld := f.bind(kind(older))
	unbindNew := f.bind(kind(newer))
	m, err := f.Fetch(context.Background(), "Example", dns.TypeDNSKEY)
	if err != nil || m.Answer[0].Header().Name != "newer." {
		t.Fatalf("fetch %v, %v; want the newest binding's answer", m, err)
	}
	q := newer.last()
	if q.Question[0] != (dns.Question{Name: "Example.", Qtype: dns.TypeDNSKEY, Qclass: dns.ClassINET}) ||
		!q.RecursionDesired || !q.CheckingDisabled || q.IsEdns0() == nil || !q.IsEdns0().Do() || gotKind != pipeline.KindInternal {
		t.Errorf("fetch query %v (kind %v)", q, gotKind)
	}
	unbindNew() // the new generation retires (or its reload is abandoned)
	if m, err := f.Fetch(context.Background(), "example.", dns.TypeDS); err != nil || m.Answer[0].Header().Name != "older." {
		t.Errorf("after unbinding the newer: %v, %v", m, err)
	}
	unbindNew() // twice is harmless
	unbindOld()
	if _, err := f.Fetch(context.Background(), "example.", dns.TypeDS); !errors.Is(err, errNoUpstream) {
		t.Errorf("all unbound: %v", err)
	}
}

// TestFetchErrors: failures and answers to another question are errors.
func TestFetchErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tests := []struct {
		name  string
		serve func(q *dns.Msg) (*dns.Msg, error)
		want  error
	}{
		{"handler error", func(*dns.Msg) (*dns.Msg, error) { return nil, boom }, boom},
		{"nil answer", func(*dns.Msg) (*dns.Msg, error) { return nil, nil }, nil},
		{"other question", func(q *dns.Msg) (*dns.Msg, error) {
			m := new(dns.Msg).SetQuestion("other.", dns.TypeDNSKEY)
			m.Response = true
			return m, nil
		}, nil},
		{"other type", func(q *dns.Msg) (*dns.Msg, error) {
			m := new(dns.Msg).SetQuestion(q.Question[0].Name, dns.TypeDS)
			return m, nil
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fetcher{now: fixedNow}
			f.bind(&fakeNext{t: t, serve: tt.serve})
			m, err := f.Fetch(context.Background(), "example.", dns.TypeDNSKEY)
			if err == nil || m != nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("got %v, %v; want an error wrapping %v", m, err, tt.want)
			}
		})
	}
}

const signedZone = `
example. 3600 IN SOA ns.example. host.example. 1 7200 3600 1209600 300
example. 3600 IN DNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==
`

// TestFetchOverUpstream fetches a DNSKEY set through the forward handler
// from a server on loopback: the chain the validator uses in dnsedge.
func TestFetchOverUpstream(t *testing.T) {
	t.Parallel()
	srv := transporttest.StartFault(t, signedZone)
	up, err := transport.NewUpstream(transport.UpstreamConfig{
		Name: "auth", Endpoint: transport.Endpoint{Scheme: "udp", Addr: netip.MustParseAddr("127.0.0.1"), Port: srv.Port()},
	}, transport.UpstreamDeps{Registry: transport.NewRegistry(transport.HealthConfig{}, nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	s, _ := transport.NewStrategy("sequential")
	g := transport.NewGroup("default", s, transport.RaceConfig{}, up)
	fwd, err := middleware.NewForward(map[string]*transport.Group{"default": g}, "default", nil, middleware.Carry{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fetcher{now: time.Now}
	f.bind(fwd)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := f.Fetch(ctx, "example.", dns.TypeDNSKEY)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Answer) != 1 || m.Answer[0].Header().Rrtype != dns.TypeDNSKEY {
		t.Errorf("answer %v, want the DNSKEY", m.Answer)
	}
	if srv.Count("ipv4", "udp") != 1 {
		t.Errorf("server saw %d UDP queries, want 1", srv.Count("ipv4", "udp"))
	}
}
