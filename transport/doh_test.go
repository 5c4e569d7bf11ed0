package transport

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/transport/transporttest"
	"github.com/miekg/dns"
)

// TestDoHBadReplies: what a DoH server sends instead of a DNS answer is
// classed as documented on DoH.Exchange.
func TestDoHBadReplies(t *testing.T) {
	t.Parallel()
	// reply reads the query from the request and answers it through fix.
	reply := func(fix func(q, m *dns.Msg) []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			q := new(dns.Msg)
			if err := q.Unpack(body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/dns-message; charset=binary")
			w.Write(fix(q, new(dns.Msg).SetReply(q)))
		}
	}
	status := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no", code) }
	}
	cases := []struct {
		name string
		h    http.HandlerFunc
		want Class
	}{
		{"ok with media type parameters", reply(func(_, m *dns.Msg) []byte { return wirePack(m) }), ClassOK},
		{"503", status(http.StatusServiceUnavailable), ClassNetwork},
		{"429", status(http.StatusTooManyRequests), ClassNetwork},
		{"404", status(http.StatusNotFound), ClassMalformed},
		{"415", status(http.StatusUnsupportedMediaType), ClassMalformed},
		{"wrong content type", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>"))
		}, ClassMalformed},
		{"garbage body", reply(func(_, _ *dns.Msg) []byte { return []byte("not dns at all") }), ClassMalformed},
		{"empty body", reply(func(_, _ *dns.Msg) []byte { return nil }), ClassMalformed},
		{"nonzero id", reply(func(_, m *dns.Msg) []byte { m.Id = 77; return wirePack(m) }), ClassMalformed},
		{"wrong question", reply(func(_, m *dns.Msg) []byte {
			m.Question[0].Name = "evil.example."
			return wirePack(m)
		}), ClassMalformed},
		{"oversize body", reply(func(_, m *dns.Msg) []byte {
			return append(wirePack(m), bytes.Repeat([]byte{0}, maxMsgSize)...)
		}), ClassMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := transporttest.StartDoH(t, transporttest.ServerConfig{HTTP: tc.h})
			x := encExchanger(t, encKinds[1], s, TLSOptions{})
			_, err := x.Exchange(wireCtx(t, 5*time.Second), wireQuery("bad.example.", dns.TypeA))
			wantClass(t, err, tc.want)
		})
	}
}

// TestDoHPath: the exchanger posts to the configured path, and a server
// serving another path is a bad reply, not a network failure.
func TestDoHPath(t *testing.T) {
	t.Parallel()
	s := transporttest.StartDoH(t, transporttest.ServerConfig{Path: "/custom/q"})
	for _, tc := range []struct {
		path string
		want Class
	}{{"/custom/q", ClassOK}, {"", ClassMalformed}} {
		x, err := NewDoH(s.Addr(), DoHConfig{TLS: encClient(t, s, TLSOptions{}), Path: tc.path})
		if err != nil {
			t.Fatal(err)
		}
		_, err = x.Exchange(wireCtx(t, 5*time.Second), wireQuery("path.example.", dns.TypeA))
		x.Close()
		if got := Classify(err); got != tc.want {
			t.Errorf("path %q: %v: class %s, want %s", tc.path, err, got, tc.want)
		}
	}
}
