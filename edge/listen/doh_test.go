package listen

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// TestDoHAnswers sends GET and POST queries over HTTP/2, HTTP/1.1 and
// HTTP/3 on both families and checks the answer and the Request.
func TestDoHAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		path   string
		send   func(c dohClient, t testing.TB, path string, q *dns.Msg) dohResult
		wantID string
	}{
		{"get", "/dns-query", dohClient.get, ""},
		{"post", "/dns-query", dohClient.post, ""},
		{"get padded base64", "/dns-query", func(c dohClient, t testing.TB, path string, q *dns.Msg) dohResult {
			wire, _ := q.Pack() // 29 bytes: base64 pads them
			return c.do(t, http.MethodGet, path+"?ct=x&dns="+base64.URLEncoding.EncodeToString(wire), nil, nil)
		}, ""},
		{"get with client id", "/dns-query/phone-1", dohClient.get, "phone-1"},
		{"post with client id", "/dns-query/Tenant-42", dohClient.post, "Tenant-42"},
	}
	for _, proto := range []string{"h2", "h1", "h3"} {
		for _, f := range []family{fam4, fam6} {
			t.Run(proto+"/"+f.name, func(t *testing.T) {
				t.Parallel()
				needFamily(t, f)
				pki := testTLS(t)
				h, seen := dohRecording(t, answerA)
				cfg := dohTestConfig(t, f, h, pki)
				cfg.HTTP3 = proto == "h3"
				l := startDoH(t, cfg)
				c := newDoHClient(t, proto, l, pki.roots)
				for _, tt := range tests {
					t.Run(tt.name, func(t *testing.T) {
						q := query("example.org.", dns.TypeA)
						q.Id = 0 // RFC 8484 §4.1
						res := tt.send(c, t, tt.path, q)
						r := dohDNSReply(t, res)
						if r.Id != 0 || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
							t.Fatalf("reply %v", r)
						}
						if a, ok := r.Answer[0].(*dns.A); !ok || a.A.String() != "192.0.2.1" {
							t.Errorf("answer %v", r.Answer[0])
						}
						if want := "HTTP/" + map[string]string{"h2": "2.0", "h1": "1.1", "h3": "3.0"}[proto]; res.Proto != want {
							t.Errorf("proto %s, want %s", res.Proto, want)
						}
						req := <-seen
						dohWantLocal(t, req, l)
						if req.ClientID != tt.wantID {
							t.Errorf("ClientID %q, want %q", req.ClientID, tt.wantID)
						}
						if req.TLS == nil || !req.TLS.HandshakeComplete {
							t.Error("Request.TLS not set")
						}
					})
				}
			})
		}
	}
}

// TestDoHBadRequests asserts the status of every kind of bad request.
func TestDoHBadRequests(t *testing.T) {
	t.Parallel()
	pki := testTLS(t)
	l := startDoH(t, dohTestConfig(t, fam4, &fakeHandler{t: t}, pki))
	c := newDoHClient(t, "h2", l, pki.roots)
	good, _ := query("example.org.", dns.TypeA).Pack()
	resp := query("example.org.", dns.TypeA)
	resp.Response = true
	twoQ := query("example.org.", dns.TypeA)
	twoQ.Question = append(twoQ.Question, twoQ.Question[0])
	dnsCT := map[string]string{"Content-Type": dnsMessageType}
	tests := []struct {
		name      string
		method    string
		pathQuery string
		hdr       map[string]string
		body      []byte
		status    int
	}{
		{"put", http.MethodPut, "/dns-query", dnsCT, good, http.StatusMethodNotAllowed},
		{"delete", http.MethodDelete, "/dns-query", nil, nil, http.StatusMethodNotAllowed},
		{"head", http.MethodHead, "/dns-query?dns=" + dohB64(t, query("example.org.", dns.TypeA)), nil, nil, http.StatusMethodNotAllowed},
		{"post without content type", http.MethodPost, "/dns-query", nil, good, http.StatusUnsupportedMediaType},
		{"post as json", http.MethodPost, "/dns-query", map[string]string{"Content-Type": "application/json"}, good, http.StatusUnsupportedMediaType},
		{"post of 65536 bytes", http.MethodPost, "/dns-query", dnsCT, append(good, make([]byte, 65536-len(good))...), http.StatusRequestEntityTooLarge},
		{"post of 1 MiB", http.MethodPost, "/dns-query", dnsCT, make([]byte, 1<<20), http.StatusRequestEntityTooLarge},
		{"post short", http.MethodPost, "/dns-query", dnsCT, good[:5], http.StatusBadRequest},
		{"post empty", http.MethodPost, "/dns-query", dnsCT, []byte{}, http.StatusBadRequest},
		{"post response", http.MethodPost, "/dns-query", dnsCT, dohPack(t, resp), http.StatusBadRequest},
		{"post two questions", http.MethodPost, "/dns-query", dnsCT, dohPack(t, twoQ), http.StatusBadRequest},
		{"post garbage", http.MethodPost, "/dns-query", dnsCT, append(good[:12:12], 0xff, 0xff, 0xff), http.StatusBadRequest},
		{"get bad base64", http.MethodGet, "/dns-query?dns=%21%21%21", nil, nil, http.StatusBadRequest},
		{"get standard base64", http.MethodGet, "/dns-query?dns=ab+/", nil, nil, http.StatusBadRequest},
		{"get missing dns", http.MethodGet, "/dns-query?foo=bar", nil, nil, http.StatusBadRequest},
		{"get empty dns", http.MethodGet, "/dns-query?dns=", nil, nil, http.StatusBadRequest},
		{"get short", http.MethodGet, "/dns-query?dns=AAEC", nil, nil, http.StatusBadRequest},
		{"get response", http.MethodGet, "/dns-query?dns=" + dohB64(t, resp), nil, nil, http.StatusBadRequest},
		{"other path", http.MethodGet, "/other?dns=" + dohB64(t, query("example.org.", dns.TypeA)), nil, nil, http.StatusNotFound},
		{"bad client id", http.MethodGet, "/dns-query/bad_id?dns=" + dohB64(t, query("example.org.", dns.TypeA)), nil, nil, http.StatusNotFound},
		{"client id too long", http.MethodGet, "/dns-query/" + strings.Repeat("a", 64) + "?dns=" + dohB64(t, query("example.org.", dns.TypeA)), nil, nil, http.StatusNotFound},
		{"nested client id", http.MethodGet, "/dns-query/a/b?dns=" + dohB64(t, query("example.org.", dns.TypeA)), nil, nil, http.StatusNotFound},
		{"empty client id", http.MethodGet, "/dns-query/?dns=" + dohB64(t, query("example.org.", dns.TypeA)), nil, nil, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := c.do(t, tt.method, tt.pathQuery, tt.hdr, tt.body)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d (%q), want %d", res.StatusCode, res.body, tt.status)
			}
			if tt.status == http.StatusMethodNotAllowed && res.Header.Get("Allow") != "GET, POST, OPTIONS" {
				t.Errorf("Allow %q", res.Header.Get("Allow"))
			}
			if tt.method != http.MethodHead && len(res.body) == 0 {
				t.Error("error without a body")
			}
			if res.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Error("no CORS header on an error")
			}
		})
	}
}

// TestDoHRejectReplies checks that a well-formed query the listener does
// not serve gets its DNS error reply, with 200.
func TestDoHRejectReplies(t *testing.T) {
	t.Parallel()
	pki := testTLS(t)
	l := startDoH(t, dohTestConfig(t, fam4, &fakeHandler{t: t}, pki))
	c := newDoHClient(t, "h2", l, pki.roots)
	notify := query("example.org.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	notify.Id = 7
	if r := dohDNSReply(t, c.post(t, "/dns-query", notify)); r.Rcode != dns.RcodeNotImplemented || r.Id != 7 {
		t.Errorf("NOTIFY got %v", r)
	}
	v1 := queryEDNS("example.org.", dns.TypeA, 1232, false)
	v1.IsEdns0().SetVersion(1)
	if r := dohDNSReply(t, c.get(t, "/dns-query", v1)); r.Rcode != dns.RcodeBadVers {
		t.Errorf("EDNS version 1 got %v", r)
	}
}

// TestDoHCacheControl checks max-age against the smallest TTL (RFC 8484
// §5.1, RFC 2308 §5 for negative answers).
func TestDoHCacheControl(t *testing.T) {
	t.Parallel()
	soa := "example.org. 3600 IN SOA ns.example.org. admin.example.org. 1 7200 900 1209600 300"
	tests := []struct {
		name  string
		serve func(context.Context, *pipeline.Request) (*dns.Msg, error)
		want  string
	}{
		{"positive", dohZoneReply(dns.RcodeSuccess, "an:example.org. 60 IN A 192.0.2.1", "an:example.org. 30 IN A 192.0.2.2", "ns:example.org. 600 IN NS ns.example.org."), "max-age=30"},
		{"additional counts", dohZoneReply(dns.RcodeSuccess, "an:example.org. 60 IN A 192.0.2.1", "ar:ns.example.org. 5 IN A 192.0.2.53"), "max-age=5"},
		{"nxdomain uses soa minimum", dohZoneReply(dns.RcodeNameError, "ns:"+soa), "max-age=300"},
		{"nodata capped by soa ttl", dohZoneReply(dns.RcodeSuccess, "ns:example.org. 120 IN SOA ns.example.org. admin.example.org. 1 7200 900 1209600 300"), "max-age=120"},
		{"zero ttl", dohZoneReply(dns.RcodeSuccess, "an:example.org. 0 IN A 192.0.2.1"), "max-age=0"},
		{"no records", dohZoneReply(dns.RcodeSuccess), "no-store"},
		{"servfail", func(context.Context, *pipeline.Request) (*dns.Msg, error) { return nil, &pipeline.Error{Text: "x"} }, "no-store"},
		{"edns opt ignored", dohZoneReply(dns.RcodeSuccess, "an:example.org. 60 IN A 192.0.2.1"), "max-age=60"},
	}
	pki := testTLS(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := startDoH(t, dohTestConfig(t, fam4, &fakeHandler{t: t, serve: tt.serve}, pki))
			c := newDoHClient(t, "h2", l, pki.roots)
			res := c.get(t, "/dns-query", queryEDNS("example.org.", dns.TypeA, 1232, false))
			dohDNSReply(t, res)
			if got := res.Header.Get("Cache-Control"); got != tt.want {
				t.Errorf("Cache-Control %q, want %q", got, tt.want)
			}
			if res.Header.Get("Content-Length") == "" && res.ContentLength != int64(len(res.body)) {
				t.Errorf("Content-Length %d for %d bytes", res.ContentLength, len(res.body))
			}
		})
	}
}

// TestDoHHeaders checks Alt-Svc, CORS and the OPTIONS preflight.
func TestDoHHeaders(t *testing.T) {
	t.Parallel()
	pki := testTLS(t)
	cfg := dohTestConfig(t, fam4, &fakeHandler{t: t, serve: answerA}, pki)
	cfg.HTTP3 = true
	l := startDoH(t, cfg)
	if l.Addr3() != l.Addr() {
		t.Errorf("HTTP/3 on %v, TCP on %v", l.Addr3(), l.Addr())
	}
	wantAltSvc := `h3=":` + strconv.Itoa(int(l.Addr().Port())) + `"; ma=86400`
	for _, proto := range []string{"h2", "h1", "h3"} {
		t.Run(proto, func(t *testing.T) {
			c := newDoHClient(t, proto, l, pki.roots)
			res := c.get(t, "/dns-query", query("example.org.", dns.TypeA))
			dohDNSReply(t, res)
			want := wantAltSvc
			if proto == "h3" {
				want = ""
			}
			if got := res.Header.Get("Alt-Svc"); got != want {
				t.Errorf("Alt-Svc %q, want %q", got, want)
			}
			if got := res.Header.Get("Access-Control-Allow-Origin"); got != "*" {
				t.Errorf("Access-Control-Allow-Origin %q", got)
			}
			pre := c.do(t, http.MethodOptions, "/dns-query", map[string]string{
				"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
				"Access-Control-Request-Headers": "content-type",
			}, nil)
			if pre.StatusCode != http.StatusNoContent {
				t.Fatalf("preflight status %d", pre.StatusCode)
			}
			for k, v := range map[string]string{
				"Access-Control-Allow-Origin":  "*",
				"Access-Control-Allow-Methods": "GET, POST, OPTIONS",
				"Access-Control-Allow-Headers": "Content-Type, Accept, traceparent, X-DNS-TraceID, X-DNS-Stage",
				"Access-Control-Max-Age":       "86400",
			} {
				if got := pre.Header.Get(k); got != v {
					t.Errorf("preflight %s %q, want %q", k, got, v)
				}
			}
		})
	}
}

// TestDoHPadding checks that a reply to an EDNS query is padded to a
// multiple of the block size (RFC 8467), and that one without EDNS is not.
func TestDoHPadding(t *testing.T) {
	t.Parallel()
	pki := testTLS(t)
	l := startDoH(t, dohTestConfig(t, fam4, &fakeHandler{t: t, serve: answerA}, pki))
	c := newDoHClient(t, "h2", l, pki.roots)
	res := c.post(t, "/dns-query", queryEDNS("example.org.", dns.TypeA, 1232, false))
	dohDNSReply(t, res)
	if len(res.body)%PaddingBlock != 0 {
		t.Errorf("reply of %d bytes, not a multiple of %d", len(res.body), PaddingBlock)
	}
	res = c.post(t, "/dns-query", query("example.org.", dns.TypeA))
	if r := dohDNSReply(t, res); r.IsEdns0() != nil || len(res.body)%PaddingBlock == 0 {
		t.Errorf("reply without EDNS of %d bytes: %v", len(res.body), r)
	}
}

// TestDoHH2C checks the cleartext mode with HTTP/2 prior knowledge and
// HTTP/1.1 clients.
func TestDoHH2C(t *testing.T) {
	t.Parallel()
	for _, proto := range []string{"h2c", "h1c"} {
		for _, f := range []family{fam4, fam6} {
			t.Run(proto+"/"+f.name, func(t *testing.T) {
				t.Parallel()
				needFamily(t, f)
				h, seen := dohRecording(t, answerA)
				cfg := testConfig(t, f, h)
				cfg.H2C = true
				l := startDoH(t, cfg)
				c := newDoHClient(t, proto, l, nil)
				res := c.post(t, "/dns-query", query("example.org.", dns.TypeA))
				if r := dohDNSReply(t, res); len(r.Answer) != 1 {
					t.Errorf("reply %v", r)
				}
				want := map[string]string{"h2c": "HTTP/2.0", "h1c": "HTTP/1.1"}[proto]
				if res.Proto != want {
					t.Errorf("proto %s, want %s", res.Proto, want)
				}
				req := <-seen
				dohWantLocal(t, req, l)
				if req.TLS != nil {
					t.Error("Request.TLS set on cleartext")
				}
			})
		}
	}
}

// TestDoHHTTP3SameAsHTTP2 checks that HTTP/3 answers byte for byte what
// HTTP/2 does.
func TestDoHHTTP3SameAsHTTP2(t *testing.T) {
	t.Parallel()
	for _, f := range []family{fam4, fam6} {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			needFamily(t, f)
			pki := testTLS(t)
			cfg := dohTestConfig(t, f, &fakeHandler{t: t, serve: answerA}, pki)
			cfg.HTTP3 = true
			l := startDoH(t, cfg)
			q := queryEDNS("example.org.", dns.TypeA, 1232, true)
			q.Id = 0
			h2 := newDoHClient(t, "h2", l, pki.roots).post(t, "/dns-query", q)
			h3 := newDoHClient(t, "h3", l, pki.roots).post(t, "/dns-query", q)
			dohDNSReply(t, h3)
			if !bytes.Equal(h2.body, h3.body) || h2.Header.Get("Cache-Control") != h3.Header.Get("Cache-Control") {
				t.Errorf("HTTP/3 reply %x (%s), HTTP/2 %x (%s)", h3.body, h3.Header.Get("Cache-Control"), h2.body, h2.Header.Get("Cache-Control"))
			}
		})
	}
}

// TestDoHConfigErrors checks what ListenDoH refuses.
func TestDoHConfigErrors(t *testing.T) {
	t.Parallel()
	pki := testTLS(t)
	for _, tt := range []struct {
		name string
		edit func(*Config)
	}{
		{"no tls", func(c *Config) { c.TLS = nil }},
		{"http3 with h2c", func(c *Config) { c.H2C, c.HTTP3 = true, true }},
		{"bad path", func(c *Config) { c.HTTPPath = "dns-query" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := dohTestConfig(t, fam4, &fakeHandler{t: t}, pki)
			tt.edit(&cfg)
			if l, err := ListenDoH(cfg); err == nil {
				l.Close()
				t.Fatal("no error")
			}
		})
	}
}

func dohPack(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
