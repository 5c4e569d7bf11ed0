package listen

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/miekg/dns"
)

// fuzzDoH returns a DoH listener whose handler the fuzz targets call
// directly, without serving: it answers every query with one A record.
func fuzzDoH(f *testing.F) *DoH {
	f.Helper()
	cfg := testConfig(f, fam4, &fakeHandler{serve: answerA})
	cfg.H2C = true
	l, err := ListenDoH(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	return l
}

// dohHandlerInvariants runs r through the handler of l: it must answer
// 200 with a DNS message (or JSON when json), or a 4xx.
func dohHandlerInvariants(t *testing.T, l *DoH, r *http.Request, isJSON bool) int {
	rec := httptest.NewRecorder()
	l.serveHTTP(rec, r)
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	switch {
	case res.StatusCode == http.StatusOK && isJSON:
		var j jsonReply
		if err := json.Unmarshal(body, &j); err != nil {
			t.Fatalf("200 with a bad JSON body %q: %v", body, err)
		}
	case res.StatusCode == http.StatusOK:
		m := new(dns.Msg)
		if err := m.Unpack(body); err != nil || !m.Response {
			t.Fatalf("200 with a bad DNS body %x: %v", body, err)
		}
		if res.Header.Get("Content-Length") == "" || res.Header.Get("Cache-Control") == "" {
			t.Fatalf("200 without Content-Length or Cache-Control: %v", res.Header)
		}
	case res.StatusCode >= 400 && res.StatusCode < 500:
		if len(body) == 0 {
			t.Fatalf("%d without a body", res.StatusCode)
		}
	default:
		t.Fatalf("status %d, body %q", res.StatusCode, body)
	}
	return res.StatusCode
}

func fuzzRequest(method, rawQuery string, body []byte) *http.Request {
	r := &http.Request{
		Method:     method,
		URL:        &url.URL{Path: DefaultHTTPPath, RawQuery: rawQuery},
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     http.Header{},
		RemoteAddr: "127.0.0.1:5353",
		Body:       http.NoBody,
	}
	if method == http.MethodPost {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r.Header.Set("Content-Type", dnsMessageType)
	}
	return r
}

// FuzzDoHGet decodes the query string of GET requests (RFC 8484 §4.1).
func FuzzDoHGet(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add("dns=" + base64.RawURLEncoding.EncodeToString(s))
		f.Add("dns=" + base64.URLEncoding.EncodeToString(s) + "&x=1")
	}
	f.Add("dns=")
	f.Add("dns=%41%41")
	f.Add("a=b&dns=AAAA&dns=BBBB")
	f.Add("dns=AA==%3D")
	l := fuzzDoH(f)
	buf := make([]byte, maxFrame)
	f.Fuzz(func(t *testing.T, rawQuery string) {
		b, derr := decodeDoHGet(rawQuery, buf)
		if derr != nil {
			if derr.status < 400 || derr.status >= 500 {
				t.Fatalf("decode error with status %d", derr.status)
			}
		} else if len(b) > dns.MaxMsgSize {
			t.Fatalf("decoded %d bytes", len(b))
		} else {
			check(b)
		}
		if _, ok := dohQueryParam(rawQuery, "dns"); ok {
			dohHandlerInvariants(t, l, fuzzRequest(http.MethodGet, rawQuery, nil), false)
		}
	})
}

// FuzzDoHPost feeds POST bodies through the body reader, the checks and
// the handler.
func FuzzDoHPost(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	for _, tt := range corpus(f) {
		f.Add(tt.data)
	}
	l := fuzzDoH(f)
	buf := make([]byte, maxFrame)
	f.Fuzz(func(t *testing.T, body []byte) {
		b, derr := readDoHPost(bytes.NewReader(body), -1, buf)
		switch {
		case len(body) > dns.MaxMsgSize:
			if derr == nil || derr.status != http.StatusRequestEntityTooLarge {
				t.Fatalf("body of %d bytes: %v", len(body), derr)
			}
		case derr != nil || !bytes.Equal(b, body):
			t.Fatalf("body of %d bytes read as %d: %v", len(body), len(b), derr)
		}
		status := dohHandlerInvariants(t, l, fuzzRequest(http.MethodPost, "", body), false)
		want := http.StatusRequestEntityTooLarge
		if len(body) <= dns.MaxMsgSize {
			switch _, act, _ := check(body); act {
			case actServe, actNotImp, actBadVers:
				want = http.StatusOK
			default:
				want = http.StatusBadRequest
			}
		}
		if status != want {
			t.Fatalf("status %d, want %d", status, want)
		}
	})
}

// FuzzDoHJSONParams checks the parameters of the JSON API: accepted ones
// give a query the listener would serve.
func FuzzDoHJSONParams(f *testing.F) {
	for _, s := range []string{
		"name=example.org", "name=example.org.&type=AAAA&do=1&cd=0",
		"name=example.org&type=65&edns_client_subnet=192.0.2.0/24",
		"name=.&type=NS&ct=application/json", "name=%5C000.example&type=TYPE99",
		"name=a..b", "type=A", "name=example.org&edns_client_subnet=::ffff:1.2.3.4/120",
	} {
		f.Add(s)
	}
	l := fuzzDoH(f)
	f.Fuzz(func(t *testing.T, rawQuery string) {
		p, derr := parseJSONParams(rawQuery)
		if derr != nil {
			if derr.status != http.StatusBadRequest {
				t.Fatalf("status %d", derr.status)
			}
		} else {
			wire, err := jsonQuery(p).Pack()
			if err != nil {
				t.Fatalf("params %+v give a query that does not pack: %v", p, err)
			}
			if _, act, _ := check(wire); act != actServe {
				t.Fatalf("params %+v give a query judged %v", p, act)
			}
		}
		if _, ok := dohQueryParam(rawQuery, "dns"); !ok {
			r := fuzzRequest(http.MethodGet, rawQuery, nil)
			r.Header.Set("Accept", dnsJSONType)
			dohHandlerInvariants(t, l, r, true)
		}
	})
}
