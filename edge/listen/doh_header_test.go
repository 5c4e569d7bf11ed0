package listen

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestDoHHeaderStacks runs the same requests through every HTTP stack of
// the listener (our HTTP/2, HTTP/1.1 and HTTP/3 over TLS; h2c and HTTP/1.1
// in cleartext): each adapts its request to the one parser
// (dohPaths.parse) and emits the one header set (responseHeaders), so
// status, client id and response headers must be the same on all.
func TestDoHHeaderStacks(t *testing.T) {
	t.Parallel()
	pki := testTLS(t)
	h, seen := dohRecording(t, answerA)
	cfg := dohTestConfig(t, fam4, h, pki)
	cfg.HTTP3 = true
	tlsL := startDoH(t, cfg)
	cfg = testConfig(t, fam4, h)
	cfg.H2C = true
	clearL := startDoH(t, cfg)

	get := "?dns=" + dohB64(t, query("example.org.", dns.TypeA))
	wire := dohPack(t, query("example.org.", dns.TypeA))
	dnsCT := map[string]string{"Content-Type": dnsMessageType}
	const absent = "<absent>"
	dnsHdrs := map[string]string{
		"Content-Type":                dnsMessageType,
		"Cache-Control":               "max-age=60",
		"Access-Control-Allow-Origin": "*",
		"X-Content-Type-Options":      absent,
		"Allow":                       absent,
	}
	textHdrs := func(extra ...string) map[string]string {
		m := map[string]string{
			"Content-Type":                "text/plain; charset=utf-8",
			"Cache-Control":               "no-store",
			"X-Content-Type-Options":      "nosniff",
			"Access-Control-Allow-Origin": "*",
			"Allow":                       absent,
		}
		for i := 0; i < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	tests := []struct {
		name      string
		method    string
		pathQuery string
		hdr       map[string]string
		body      []byte
		status    int
		id        string // the client id the pipeline sees, when it is called
		want      map[string]string
	}{
		{"get", http.MethodGet, "/dns-query" + get, nil, nil, 200, "", dnsHdrs},
		{"get with client id", http.MethodGet, "/dns-query/phone-1" + get, nil, nil, 200, "phone-1", dnsHdrs},
		{"get with escaped client id", http.MethodGet, "/dns-query/phone%2D2" + get, nil, nil, 200, "phone-2", dnsHdrs},
		{"post", http.MethodPost, "/dns-query", dnsCT, wire, 200, "", dnsHdrs},
		{"post content type with parameters", http.MethodPost, "/dns-query/t-1",
			map[string]string{"Content-Type": "Application/DNS-Message ; charset=x"}, wire, 200, "t-1", dnsHdrs},
		{"post other content type", http.MethodPost, "/dns-query",
			map[string]string{"Content-Type": "application/octet-stream"}, wire, 415, "", textHdrs()},
		{"post without content type", http.MethodPost, "/dns-query", nil, wire, 415, "", textHdrs()},
		{"post too long", http.MethodPost, "/dns-query", dnsCT, make([]byte, dns.MaxMsgSize+1), 413, "", textHdrs()},
		{"put", http.MethodPut, "/dns-query", dnsCT, wire, 405, "", textHdrs("Allow", "GET, POST, OPTIONS")},
		{"other path", http.MethodGet, "/other" + get, nil, nil, 404, "", textHdrs()},
		{"bad client id", http.MethodGet, "/dns-query/a_b" + get, nil, nil, 404, "", textHdrs()},
		{"json by name", http.MethodGet, "/dns-query?name=example.org&type=A", nil, nil, 200, "", map[string]string{
			"Content-Type": dnsJSONType, "Cache-Control": "max-age=60", "Access-Control-Allow-Origin": "*",
		}},
		{"json by accept", http.MethodGet, "/dns-query", map[string]string{"Accept": dnsJSONType}, nil, 400, "", map[string]string{
			"Content-Type": dnsJSONType, "Cache-Control": "no-store",
		}},
		{"preflight", http.MethodOptions, "/dns-query", map[string]string{
			"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
		}, nil, 204, "", map[string]string{
			"Access-Control-Allow-Origin":  "*",
			"Access-Control-Allow-Methods": "GET, POST, OPTIONS",
			"Access-Control-Allow-Headers": "Content-Type, Accept, traceparent, X-DNS-TraceID, X-DNS-Stage",
			"Access-Control-Max-Age":       "86400",
			"Allow":                        "GET, POST, OPTIONS",
			"Content-Type":                 absent,
		}},
	}
	altSvc := `h3=":` + strconv.Itoa(int(tlsL.Addr().Port())) + `"; ma=86400`
	for _, stack := range []struct {
		proto, wantProto, altSvc string
		l                        *DoH
	}{
		{"h2", "HTTP/2.0", altSvc, tlsL},
		{"h1", "HTTP/1.1", altSvc, tlsL},
		{"h3", "HTTP/3.0", "", tlsL},
		{"h2c", "HTTP/2.0", "", clearL},
		{"h1c", "HTTP/1.1", "", clearL},
	} {
		t.Run(stack.proto, func(t *testing.T) {
			c := newDoHClient(t, stack.proto, stack.l, pki.roots)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					res := c.do(t, tt.method, tt.pathQuery, tt.hdr, tt.body)
					if res.Proto != stack.wantProto {
						t.Errorf("proto %s, want %s", res.Proto, stack.wantProto)
					}
					if res.StatusCode != tt.status {
						t.Fatalf("status %d (%q), want %d", res.StatusCode, res.body, tt.status)
					}
					want := map[string]string{"Alt-Svc": stack.altSvc}
					if stack.altSvc == "" {
						want["Alt-Svc"] = absent
					}
					if tt.status != http.StatusNoContent {
						want["Content-Length"] = strconv.Itoa(len(res.body))
					}
					for k, v := range tt.want {
						want[k] = v
					}
					for k, v := range want {
						got, ok := res.Header[http.CanonicalHeaderKey(k)]
						switch {
						case v == absent && ok:
							t.Errorf("%s %q, want none", k, got)
						case v != absent && (len(got) != 1 || got[0] != v):
							t.Errorf("%s %q, want %q", k, got, v)
						}
					}
					if res.Header.Get("Date") == "" {
						t.Error("no Date")
					}
					if tt.status == http.StatusOK && tt.want["Content-Type"] == dnsMessageType {
						if req := <-seen; req.ClientID != tt.id {
							t.Errorf("ClientID %q, want %q", req.ClientID, tt.id)
						}
					} else {
						for len(seen) > 0 {
							<-seen // the JSON API's query
						}
					}
				})
			}
		})
	}
}

// TestDoHParseHead checks the one parser of DoH request heads.
func TestDoHParseHead(t *testing.T) {
	t.Parallel()
	p := newDoHPaths(DefaultHTTPPath)
	tests := []struct {
		name   string
		head   dohHead
		op     dohOp
		id     string
		status int // 0: no error
	}{
		{"get", dohHead{method: "GET", path: "/dns-query", rawQuery: "dns=AAAA", length: -1}, dohOpGet, "", 0},
		{"get json by name", dohHead{method: "GET", path: "/dns-query", rawQuery: "name=a", length: -1}, dohOpJSON, "", 0},
		{"get json by accept", dohHead{method: "GET", path: "/dns-query/x", accept: "text/html, application/dns-json", length: -1}, dohOpJSON, "x", 0},
		{"get dns wins over name", dohHead{method: "GET", path: "/dns-query", rawQuery: "name=a&dns=AAAA", accept: dnsJSONType, length: -1}, dohOpGet, "", 0},
		{"escaped path", dohHead{method: "GET", path: "/dns%2Dquery/a%2Db", length: -1}, dohOpGet, "a-b", 0},
		{"bad escape", dohHead{method: "GET", path: "/dns-query/%zz", length: -1}, dohOpNone, "", 404},
		{"escaped slash in id", dohHead{method: "GET", path: "/dns-query/a%2Fb", length: -1}, dohOpNone, "", 404},
		{"post", dohHead{method: "POST", path: "/dns-query/t1", contentType: "application/dns-message", length: 30}, dohOpPost, "t1", 0},
		{"post of unknown length", dohHead{method: "POST", path: "/dns-query", contentType: "application/dns-message", length: -1}, dohOpPost, "", 0},
		{"post too long", dohHead{method: "POST", path: "/dns-query", contentType: "application/dns-message", length: 65536}, dohOpPost, "", 413},
		{"post bad type", dohHead{method: "POST", path: "/dns-query", contentType: "text/plain", length: 3}, dohOpPost, "", 415},
		{"options", dohHead{method: "OPTIONS", path: "/dns-query", length: -1}, dohOpPreflight, "", 0},
		{"head", dohHead{method: "HEAD", path: "/dns-query", length: -1}, dohOpNone, "", 405},
		{"not found before method", dohHead{method: "PUT", path: "/", length: -1}, dohOpNone, "", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op, id, err := p.parse(&tt.head)
			status := 0
			if err != nil {
				status = err.status
			}
			if op != tt.op || status != tt.status || (err == nil && id != tt.id) {
				t.Errorf("parse = %v, %q, %d; want %v, %q, %d", op, id, status, tt.op, tt.id, tt.status)
			}
		})
	}
}

// FuzzDoHHead feeds request heads to the one parser, as our HTTP/2
// server gives them (the :path split at '?') and as net/http does (the
// URL it parsed, escaped again): both must read the same.
func FuzzDoHHead(f *testing.F) {
	f.Add("GET", "/dns-query?dns=AAAA", "", "", int64(-1))
	f.Add("GET", "/dns-query/id-1?name=example.org", "", "application/dns-json", int64(-1))
	f.Add("POST", "/dns-query", "application/dns-message", "", int64(33))
	f.Add("POST", "/dns-query/%41", "Application/Dns-Message;q=1", "", int64(70000))
	f.Add("OPTIONS", "/dns%2Dquery", "", "", int64(-1))
	f.Add("DELETE", "/dns-query/a%2Fb?x", "", "", int64(0))
	p := newDoHPaths(DefaultHTTPPath)
	f.Fuzz(func(t *testing.T, method, target, ct, accept string, length int64) {
		h := dohHead{method: method, contentType: ct, accept: accept, length: length}
		h.path, h.rawQuery, _ = strings.Cut(target, "?")
		op, id, err := p.parse(&h)
		switch {
		case err == nil && op == dohOpNone, err != nil && op != dohOpNone && op != dohOpPost:
			t.Fatalf("op %v with error %v", op, err)
		case err != nil && !strings.Contains(" 404 405 413 415 ", " "+strconv.Itoa(err.status)+" "):
			t.Fatalf("status %d", err.status)
		case err == nil && id != "" && !ValidClientID(id):
			t.Fatalf("client id %q", id)
		}
		u, uerr := url.ParseRequestURI(target)
		if uerr != nil || !strings.HasPrefix(target, "/") {
			return
		}
		h2 := h
		h2.path, h2.rawQuery = u.EscapedPath(), u.RawQuery
		op2, id2, err2 := p.parse(&h2)
		if op2 != op || id2 != id || (err == nil) != (err2 == nil) || err != nil && err.status != err2.status {
			t.Fatalf("raw %q reads %v %q %v, net/http's %q %v %q %v", target, op, id, err, h2.path, op2, id2, err2)
		}
	})
}
