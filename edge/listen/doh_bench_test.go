//go:build unix

package listen

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// BenchmarkDoHPost measures a POST query round trip through the DoH
// listener over one real HTTP/2 connection with TLS, several requests in
// flight on it, and a trivial handler. allocs/op and cpu-ns/op count the
// client too (x/net/http2 Transport), which costs about as much as the
// server.
func BenchmarkDoHPost(b *testing.B) {
	h := pipeline.HandlerFunc(func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		return m, nil
	})
	pki := testTLS(b)
	cfg := Config{
		Addr:    fam4.addr,
		Handler: func() pipeline.Handler { return h },
		TLS:     pki.server,
	}
	l := startDoH(b, cfg)
	c := newDoHClient(b, "h2", l, pki.roots)
	wire, err := query("example.org.", dns.TypeA).Pack()
	if err != nil {
		b.Fatal(err)
	}
	url := c.base + DefaultHTTPPath
	// One request first, so the connection is up before timing.
	c.post(b, DefaultHTTPPath, query("example.org.", dns.TypeA))
	b.ReportAllocs()
	b.SetParallelism(4)
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 512)
		hdr := http.Header{"Content-Type": {dnsMessageType}}
		for pb.Next() {
			req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(wire))
			if err != nil {
				b.Error(err)
				return
			}
			req.Header = hdr
			resp, err := c.Transport.RoundTrip(req)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.ReadFull(resp.Body, buf[:headerLen])
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || n != headerLen || buf[0] != wire[0] || buf[1] != wire[1] {
				b.Errorf("status %d, reply does not match the query", resp.StatusCode)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}
