package transport

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// TestDialTrace: a query whose ctx carries a DialTrace is told when its
// exchanger connects a new TCP socket, with the local address, and not
// when the connection is reused.
func TestDialTrace(t *testing.T) {
	up := transporttest.StartFault(t, "$ORIGIN test.example.\n@ 60 IN SOA ns h 1 3600 600 86400 30\nwww 60 IN A 192.0.2.10\n")
	ex := NewTCP(up.AddrV4(), TCPConfig{})
	defer ex.Close()
	var mu sync.Mutex
	var locals []netip.AddrPort
	trace := &DialTrace{Connected: func(a netip.AddrPort) {
		mu.Lock()
		locals = append(locals, a)
		mu.Unlock()
	}}
	q := new(dns.Msg)
	q.SetQuestion("www.test.example.", dns.TypeA)
	tests := []struct {
		name  string
		trace bool
		want  int // Connected calls so far
	}{
		{"new connection", true, 1},
		{"reused connection", true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if tt.trace {
				ctx = WithDialTrace(ctx, trace)
			}
			if _, err := ex.Exchange(ctx, q); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(locals) != tt.want || !locals[0].Addr().IsLoopback() || locals[0].Port() == 0 {
				t.Fatalf("Connected with %v", locals)
			}
		})
	}
}
