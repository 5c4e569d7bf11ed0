package transport

import (
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/transport/transporttest"
	"github.com/miekg/dns"
)

// TestDoHMetaHeaders: the Meta of a query's context reaches a DoH
// upstream as request headers, and a query without one sends none.
func TestDoHMetaHeaders(t *testing.T) {
	t.Parallel()
	const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	cases := []struct {
		name string
		meta *Meta
		want http.Header // X-Dns-* and Traceparent only
	}{
		{"none", nil, http.Header{}},
		{"tags and w3c trace", &Meta{Tags: []string{"env=prod", "stage=canary"}, TraceID: tid, SpanID: sid, Sampled: true}, http.Header{
			"X-Dns-Tag":     {"env=prod", "stage=canary"},
			"X-Dns-Traceid": {tid},
			"Traceparent":   {"00-" + tid + "-" + sid + "-01"},
		}},
		{"unsampled", &Meta{TraceID: tid, SpanID: sid}, http.Header{
			"X-Dns-Traceid": {tid},
			"Traceparent":   {"00-" + tid + "-" + sid + "-00"},
		}},
		{"trace id of another form", &Meta{TraceID: "req-42", SpanID: sid}, http.Header{"X-Dns-Traceid": {"req-42"}}},
		{"trace id of another form, no span id", &Meta{TraceID: "req-42"}, http.Header{"X-Dns-Traceid": {"req-42"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := make(chan http.Header, 2)
			s := transporttest.StartDoH(t, transporttest.ServerConfig{HTTP: func(w http.ResponseWriter, r *http.Request) {
				h := http.Header{}
				for k, v := range r.Header {
					if k == "Traceparent" || len(k) > 6 && k[:6] == "X-Dns-" {
						h[k] = v
					}
				}
				got <- h
				body, _ := io.ReadAll(r.Body)
				q := new(dns.Msg)
				if err := q.Unpack(body); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Type", dohMediaType)
				w.Write(wirePack(new(dns.Msg).SetReply(q)))
			}})
			x := encExchanger(t, encKinds[1], s, TLSOptions{})
			ctx := wireCtx(t, 5*time.Second)
			if tc.meta != nil {
				ctx = WithQueryMeta(ctx, *tc.meta)
			}
			if _, err := x.Exchange(ctx, wireQuery("meta.example.", dns.TypeA)); err != nil {
				t.Fatal(err)
			}
			h := <-got
			if len(h) != len(tc.want) {
				t.Errorf("headers %v, want %v", h, tc.want)
			}
			for k, v := range tc.want {
				if !slices.Equal(h[k], v) {
					t.Errorf("%s: %q, want %q", k, h[k], v)
				}
			}
		})
	}
}

// TestMetaHeadersMadeSpan: without a span id, the traceparent gets a
// parent id of its own per request.
func TestMetaHeadersMadeSpan(t *testing.T) {
	t.Parallel()
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	m := &Meta{TraceID: tid}
	a, b := http.Header{}, http.Header{}
	metaHeaders(a, m)
	metaHeaders(b, m)
	pa, pb := a.Get("Traceparent"), b.Get("Traceparent")
	if len(pa) != 55 || pa[:36] != "00-"+tid+"-" || !IsSpanID(pa[36:52]) || pa[52:] != "-00" || pa == pb {
		t.Fatalf("traceparents %q and %q", pa, pb)
	}
}

func TestIsTraceID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"4bf92f3577b34da6a3ce929d0e0e4736", true},
		{"00000000000000000000000000000000", false},
		{"4BF92F3577B34DA6A3CE929D0E0E4736", false},
		{"4bf92f3577b34da6a3ce929d0e0e473", false},
		{"4bf92f3577b34da6a3ce929d0e0e4736a", false},
		{"4bf92f3577b34da6a3ce929d0e0e473g", false},
		{"", false},
	} {
		if got := IsTraceID(tc.s); got != tc.want {
			t.Errorf("IsTraceID(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}
