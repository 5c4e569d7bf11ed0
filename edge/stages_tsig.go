package edge

import (
	"context"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/edge/tsig"
)

// buildTSIG builds the TSIG stage. It is always in the chain: without
// keys a signed query is BADKEY (forwarded unchanged, or NOTAUTH when
// dnsedge would answer it itself), and a listener may require TSIG.
func buildTSIG(b *chainBuild) (pipeline.Middleware, error) {
	kr, err := b.g.keyring()
	if err != nil {
		return nil, err
	}
	m, _, err := take(b.g.parts, tsigMetricsKey{}, func() (*tsig.Metrics, func() error, error) {
		return tsig.NewMetrics(), nil, nil
	})
	if err != nil {
		return nil, err
	}
	if err := m.Register(b.g.metrics); err != nil {
		return nil, err
	}
	s := tsig.NewStage(kr, m, func(req *pipeline.Request) bool { return req.RequireTSIG })
	return s.Middleware, nil
}

// tsigMetricsKey keeps the TSIG counters across reloads.
type tsigMetricsKey struct{}

// keyring returns the generation's TSIG keys, built on first use.
func (g *generation) keyring() (*tsig.Keyring, error) {
	if g.tsigKeys == nil {
		kr, err := tsig.New(g.cfg.TSIG, nil)
		if err != nil {
			return nil, err
		}
		g.tsigKeys = kr
	}
	return g.tsigKeys, nil
}

// skipForeignTSIG wraps a caching or validating stage so that a query
// signed with a key dnsedge does not hold goes around it: its answer,
// signed by the key's holder, is relayed unchanged and never cached (RFC
// 8945 §5.5).
func skipForeignTSIG(mw pipeline.Middleware) pipeline.Middleware {
	return func(next pipeline.Handler) pipeline.Handler {
		inner := mw(next)
		return pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
			if req.TSIG == pipeline.TSIGBadKey {
				return next.ServeDNS(ctx, req)
			}
			return inner.ServeDNS(ctx, req)
		})
	}
}
