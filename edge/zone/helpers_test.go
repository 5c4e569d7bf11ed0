package zone

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// exampleZone is the zone most answering tests run against. The SOA TTL
// (300) is above its MINIMUM (120), so negative answers carry TTL 120.
const exampleZone = `$ORIGIN example.
$TTL 300
@         IN SOA   ns1 hostmaster 2024010101 7200 3600 1209600 120
@         IN NS    ns1
@         IN MX    10 mail
ns1       IN A     192.0.2.53
www       IN A     192.0.2.1
www       IN AAAA  2001:db8::1
www       IN RRSIG A 13 2 300 20300101000000 20200101000000 12345 example. dGVzdA==
@         IN RRSIG SOA 13 1 300 20300101000000 20200101000000 12345 example. dGVzdA==
mail      IN A     192.0.2.25
alias     IN CNAME www
chain1    IN CNAME chain2
chain2    IN CNAME www
dangling  IN CNAME nothere
loop1     IN CNAME loop2
loop2     IN CNAME loop1
outside   IN CNAME www.example.org.
a.b.c     IN A     192.0.2.9
*.wild    IN A     192.0.2.77
*.wild    IN TXT   "wild"
sub.wild  IN A     192.0.2.78
*.cwild   IN CNAME www
deleg     IN NS    ns.deleg
deleg     IN NS    ns.elsewhere.org.
deleg     IN DS    12345 13 2 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE8F1C4F1B9A2C7E6D2E9A8B1C
deleg     IN RRSIG DS 13 2 300 20300101000000 20200101000000 12345 example. dGVzdA==
ns.deleg  IN A     192.0.2.100
`

// soaNeg is the SOA of exampleZone as negative answers carry it.
const soaNeg = "example. 120 IN SOA ns1.example. hostmaster.example. 2024010101 7200 3600 1209600 120"

// mustParse parses text as the zone origin, failing t on error.
func mustParse(t testing.TB, origin, text string) *Zone {
	t.Helper()
	z, err := Parse(origin, strings.NewReader(text), "test.zone")
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// query returns a query for name and qtype, with EDNS and DO when do.
func query(name string, qtype uint16, do bool) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	if do {
		q.SetEdns0(1232, true)
	}
	return q
}

// texts returns the presentation form of rrs.
func texts(rrs []dns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, rr.String())
	}
	return out
}

// canon returns records written as zone text in the form texts returns.
func canon(t testing.TB, rrs []string) []string {
	t.Helper()
	out := make([]string, 0, len(rrs))
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("bad record in test table %q: %v", s, err)
		}
		out = append(out, rr.String())
	}
	return out
}

// sameRRs reports whether got and want hold the same records, in any
// order.
func sameRRs(got, want []string) bool {
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}

// fakeNext is the handler after the stage under test. An unset serve
// fails the test when called.
type fakeNext struct {
	t     testing.TB
	serve func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error)
}

func (f *fakeNext) ServeDNS(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
	if f.serve == nil {
		f.t.Errorf("next called for %s", req.Question().Name)
		return nil, pipeline.ErrDrop
	}
	return f.serve(ctx, req)
}

// upstreamAnswer is what fake upstreams answer: TXT "upstream".
func upstreamAnswer(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetReply(req.Msg)
	txt := &dns.TXT{Hdr: dns.RR_Header{Name: req.Question().Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 1}, Txt: []string{"upstream"}}
	m.Answer = append(m.Answer, txt)
	return m, nil
}

// request returns a request for name and qtype from client with id.
func request(name string, qtype uint16, client, id string) *pipeline.Request {
	r := &pipeline.Request{Msg: query(name, qtype, true), ClientID: id, Listener: pipeline.KindUDP}
	if client != "" {
		r.Client = netip.AddrPortFrom(netip.MustParseAddr(client), 53000)
	}
	return r
}

// writeFile writes data to path through a temporary file and a rename, so
// a reader never sees it half written.
func writeFile(t testing.TB, path, data string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// gather returns the value of every dnsedge_zone_* metric in reg; the
// records gauge by "set/zone".
func gather(t testing.TB, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}
