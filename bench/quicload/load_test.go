package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/miekg/dns"
)

func TestSummaryString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		s    summary
		want string
	}{
		{name: "nothing", s: summary{}, want: "sent=0 answered=0 lost=0 errors=0 noerror=0 seconds=0.000 qps=0 p50_ms=- p99_ms=-"},
		{name: "answered", s: summary{sent: 2, answered: 2, noerror: 2, seconds: 1, lat: []float64{0.002, 0.001}},
			want: "sent=2 answered=2 lost=0 errors=0 noerror=2 seconds=1.000 qps=2 p50_ms=1.000 p99_ms=2.000"},
		{name: "lost is slowest", s: summary{sent: 2, answered: 1, lost: 1, errors: 1, seconds: 2, lat: []float64{math.Inf(1), 0.001}},
			want: "sent=2 answered=1 lost=1 errors=1 noerror=0 seconds=2.000 qps=0 p50_ms=1.000 p99_ms=timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.s.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadQueries(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "q.txt")
	if err := os.WriteFile(path, []byte("h1.bench.test A\n# comment\n\nh2.bench.test aaaa\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	qs, err := readQueries(path)
	if err != nil {
		t.Fatalf("readQueries: %v", err)
	}
	if len(qs) != 2 {
		t.Fatalf("got %d queries, want 2", len(qs))
	}
	var m dns.Msg
	if err := m.Unpack(qs[1]); err != nil {
		t.Fatal(err)
	}
	if m.Id != 0 || m.Question[0].Name != "h2.bench.test." || m.Question[0].Qtype != dns.TypeAAAA {
		t.Errorf("got %v", m.String())
	}
	var s summary
	if err := check(qs[0], qs[1], &s); err == nil {
		t.Error("check accepted an answer to another question")
	}
}

// TestDoH2 exchanges a query over HTTP/2 POST with a DoH server, and
// refuses a server that speaks only HTTP/1.1.
func TestDoH2(t *testing.T) {
	t.Parallel()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var q dns.Msg
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			if q.Unpack(body) != nil || r.Header.Get("Content-Type") != "application/dns-message" {
				http.Error(w, "bad query", http.StatusBadRequest)
				return
			}
		} else {
			q.SetQuestion("h0.bench.test.", dns.TypeA)
		}
		m := new(dns.Msg)
		m.SetReply(&q)
		b, _ := m.Pack()
		w.Header().Set("Content-Type", "application/dns-message")
		w.Write(b)
	})
	for _, h2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewUnstartedServer(handler)
			srv.EnableHTTP2 = h2
			srv.StartTLS()
			defer srv.Close()
			conf := &tls.Config{RootCAs: x509.NewCertPool()}
			conf.RootCAs.AddCert(srv.Certificate())
			ctx := context.Background()
			c, err := dialDoH2(ctx, srv.Listener.Addr().String(), conf)
			if !h2 {
				if err == nil {
					c.close()
					t.Fatal("dialled an HTTP/1.1 server")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.close()
			q := new(dns.Msg)
			q.SetQuestion("h1.bench.test.", dns.TypeAAAA)
			q.Id = 0
			qb, _ := q.Pack()
			b, err := c.exchange(ctx, qb)
			if err != nil {
				t.Fatal(err)
			}
			var s summary
			if err := check(qb, b, &s); err != nil || s.noerror != 1 {
				t.Errorf("answer: %v (noerror %d)", err, s.noerror)
			}
		})
	}
}
