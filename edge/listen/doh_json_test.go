package listen

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// TestDoHJSON runs the JSON API: the query built from the parameters, the
// Request the pipeline sees and the rendered reply.
func TestDoHJSON(t *testing.T) {
	t.Parallel()
	records := map[uint16]string{
		dns.TypeA:    "example.org. 300 IN A 192.0.2.1",
		dns.TypeAAAA: "example.org. 300 IN AAAA 2001:db8::1",
		dns.TypeTXT:  `example.org. 300 IN TXT "v=spf1 -all" "second"`,
		dns.TypeMX:   "example.org. 300 IN MX 10 mail.example.org.",
		65:           "example.org. 300 IN HTTPS 1 . alpn=h2",
	}
	serve := func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		m.RecursionAvailable = true
		if rr, ok := records[req.Question().Qtype]; ok {
			m.Answer = append(m.Answer, mustRR(rr))
		}
		return m, nil
	}
	tests := []struct {
		name      string
		query     string
		accept    string
		wantType  uint16
		wantData  string
		wantCT    string
		checkReq  func(t *testing.T, req pipeline.Request)
		wantRcode int
	}{
		{name: "default type A", query: "name=example.org", wantType: dns.TypeA, wantData: "192.0.2.1"},
		{name: "AAAA by name", query: "name=example.org.&type=AAAA", wantType: dns.TypeAAAA, wantData: "2001:db8::1"},
		{name: "lowercase type", query: "name=example.org&type=txt", wantType: dns.TypeTXT, wantData: `"v=spf1 -all" "second"`},
		{name: "type by number", query: "name=example.org&type=15", wantType: dns.TypeMX, wantData: "10 mail.example.org."},
		{name: "generic type", query: "name=example.org&type=TYPE65", wantType: 65, wantData: `1 . alpn="h2"`},
		{name: "accept header without name", query: "type=A", accept: dnsJSONType, wantRcode: -1},
		{name: "do and cd", query: "name=example.org&do=1&cd=true", wantType: dns.TypeA, wantData: "192.0.2.1",
			checkReq: func(t *testing.T, req pipeline.Request) {
				if opt := req.Msg.IsEdns0(); opt == nil || !opt.Do() || !req.Msg.CheckingDisabled {
					t.Errorf("query %v, want DO and CD", req.Msg)
				}
			}},
		{name: "flags off", query: "name=example.org&do=false&cd=0", wantType: dns.TypeA, wantData: "192.0.2.1",
			checkReq: func(t *testing.T, req pipeline.Request) {
				if req.Msg.IsEdns0() != nil || req.Msg.CheckingDisabled || !req.Msg.RecursionDesired {
					t.Errorf("query %v, want RD only", req.Msg)
				}
			}},
		{name: "edns client subnet", query: "name=example.org&edns_client_subnet=198.51.100.77/24", wantType: dns.TypeA, wantData: "192.0.2.1",
			checkReq: func(t *testing.T, req pipeline.Request) {
				if want := netip.MustParsePrefix("198.51.100.0/24"); req.ECS != want {
					t.Errorf("ECS %v, want %v", req.ECS, want)
				}
				opt := req.Msg.IsEdns0()
				if opt == nil || len(opt.Option) != 1 {
					t.Fatalf("query OPT %v", opt)
				}
				if s, ok := opt.Option[0].(*dns.EDNS0_SUBNET); !ok || s.SourceNetmask != 24 || s.Family != 1 || s.Address.String() != "198.51.100.0" {
					t.Errorf("ECS option %v", opt.Option[0])
				}
			}},
		{name: "edns client subnet v6 address", query: "name=example.org&edns_client_subnet=2001:db8::1", wantType: dns.TypeA, wantData: "192.0.2.1",
			checkReq: func(t *testing.T, req pipeline.Request) {
				if want := netip.MustParsePrefix("2001:db8::1/128"); req.ECS != want {
					t.Errorf("ECS %v, want %v", req.ECS, want)
				}
			}},
		{name: "ct json", query: "name=example.org&ct=application/json", wantType: dns.TypeA, wantData: "192.0.2.1", wantCT: jsonType},
		{name: "ct javascript", query: "name=example.org&ct=application/x-javascript", wantType: dns.TypeA, wantData: "192.0.2.1", wantCT: jsJSONType},
		{name: "empty name", query: "name=", wantRcode: -1},
		{name: "bad name", query: "name=a..b", wantRcode: -1},
		{name: "trailing backslash", query: `name=\0\`, wantRcode: -1}, // fuzz crasher ca7c3dda038261bf
		{name: "long name", query: "name=" + longName(), wantRcode: -1},
		{name: "bad type", query: "name=example.org&type=NOPE", wantRcode: -1},
		{name: "type zero", query: "name=example.org&type=0", wantRcode: -1},
		{name: "type too big", query: "name=example.org&type=65536", wantRcode: -1},
		{name: "type OPT", query: "name=example.org&type=OPT", wantRcode: -1},
		{name: "bad do", query: "name=example.org&do=yes", wantRcode: -1},
		{name: "bad cd", query: "name=example.org&cd=2", wantRcode: -1},
		{name: "bad subnet", query: "name=example.org&edns_client_subnet=300.1.1.1/8", wantRcode: -1},
		{name: "bad ct", query: "name=example.org&ct=text/html", wantRcode: -1},
		{name: "bad escape", query: "name=%zz", wantRcode: -1},
	}
	h, seen := dohRecording(t, serve)
	l := startDoH(t, dohTestConfig(t, fam4, h, testTLS(t)))
	c := newDoHClient(t, "h2", l, testTLS(t).roots)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.accept != "" {
				hdr["Accept"] = tt.accept
			}
			res := c.do(t, http.MethodGet, "/dns-query/json-1?"+tt.query, hdr, nil)
			if tt.wantRcode < 0 {
				if res.StatusCode != http.StatusBadRequest {
					t.Fatalf("status %d, want 400", res.StatusCode)
				}
				var e struct{ Error string }
				if err := json.Unmarshal(res.body, &e); err != nil || e.Error == "" {
					t.Errorf("error body %q: %v", res.body, err)
				}
				return
			}
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d (%s)", res.StatusCode, res.body)
			}
			wantCT := tt.wantCT
			if wantCT == "" {
				wantCT = dnsJSONType
			}
			if ct := res.Header.Get("Content-Type"); ct != wantCT {
				t.Errorf("Content-Type %q, want %q", ct, wantCT)
			}
			if cc := res.Header.Get("Cache-Control"); cc != "max-age=300" {
				t.Errorf("Cache-Control %q", cc)
			}
			var got jsonReply
			if err := json.Unmarshal(res.body, &got); err != nil {
				t.Fatalf("body %s: %v", res.body, err)
			}
			if got.Status != 0 || !got.RD || !got.RA || len(got.Question) != 1 || got.Question[0].Name != "example.org." || got.Question[0].Type != tt.wantType {
				t.Errorf("reply %s", res.body)
			}
			if len(got.Answer) != 1 || got.Answer[0].Data != tt.wantData || got.Answer[0].TTL != 300 || got.Answer[0].Type != tt.wantType || got.Answer[0].Name != "example.org." {
				t.Errorf("answer %+v, want data %q", got.Answer, tt.wantData)
			}
			req := <-seen
			dohWantLocal(t, req, l)
			if req.ClientID != "json-1" {
				t.Errorf("ClientID %q", req.ClientID)
			}
			if tt.checkReq != nil {
				tt.checkReq(t, req)
			}
		})
	}
}

// TestDoHJSONErrors checks that handler errors and negative answers come
// out with their status and comment.
func TestDoHJSONErrors(t *testing.T) {
	t.Parallel()
	serve := func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
		if req.Question().Name == "fail.example." {
			return nil, &pipeline.Error{EDE: dns.ExtendedErrorCodeNoReachableAuthority, Text: "all paths failed"}
		}
		return dohZoneReply(dns.RcodeNameError, "ns:example. 900 IN SOA ns.example. admin.example. 1 2 3 4 60")(context.Background(), req)
	}
	l := startDoH(t, dohTestConfig(t, fam4, &fakeHandler{t: t, serve: serve}, testTLS(t)))
	c := newDoHClient(t, "h2", l, testTLS(t).roots)

	res := c.do(t, http.MethodGet, "/dns-query?name=fail.example&do=1", nil, nil)
	var got jsonReply
	if err := json.Unmarshal(res.body, &got); err != nil || got.Status != dns.RcodeServerFailure || got.Comment != "all paths failed" {
		t.Errorf("SERVFAIL reply %s (%v)", res.body, err)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("SERVFAIL Cache-Control %q", cc)
	}

	res = c.do(t, http.MethodGet, "/dns-query?name=nx.example", nil, nil)
	got = jsonReply{}
	if err := json.Unmarshal(res.body, &got); err != nil || got.Status != dns.RcodeNameError || len(got.Authority) != 1 || got.Authority[0].Type != dns.TypeSOA {
		t.Errorf("NXDOMAIN reply %s (%v)", res.body, err)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "max-age=60" {
		t.Errorf("NXDOMAIN Cache-Control %q", cc)
	}
}

func longName() string {
	s := ""
	for range 5 {
		s += "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghij."
	}
	return s + "example."
}
