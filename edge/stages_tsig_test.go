package edge

import (
	"context"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// TestSkipForeignTSIG: the caches are bypassed for a query signed with a
// key dnsedge does not hold, and only for it.
func TestSkipForeignTSIG(t *testing.T) {
	t.Parallel()
	cached := func(pipeline.Handler) pipeline.Handler {
		return pipeline.HandlerFunc(func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
			req.Outcome.Source = pipeline.SourceCache
			return new(dns.Msg), nil
		})
	}
	next := pipeline.HandlerFunc(func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
		req.Outcome.Source = pipeline.SourceUpstream
		return new(dns.Msg), nil
	})
	h := skipForeignTSIG(cached)(next)
	for state, want := range map[pipeline.TSIGState]pipeline.Source{
		pipeline.TSIGNone:     pipeline.SourceCache,
		pipeline.TSIGVerified: pipeline.SourceCache,
		pipeline.TSIGBadKey:   pipeline.SourceUpstream,
	} {
		q := new(dns.Msg)
		q.SetQuestion("example.org.", dns.TypeA)
		req := &pipeline.Request{Msg: q, TSIG: state}
		if _, err := h.ServeDNS(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		if req.Outcome.Source != want {
			t.Errorf("%s: answered from %s, want %s", state, req.Outcome.Source, want)
		}
	}
}
