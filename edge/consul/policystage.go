package consul

import (
	"context"
	"sync/atomic"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/middleware"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// Stage returns the policy stage of a generation whose policy comes
// from Consul KV and whose default group is defaultGroup (see
// middleware.NewPolicy): each query is decided by the version in force
// when it arrives, so that a swap loses no query and a query never sees
// half a version. Without a version in force queries pass to next
// undecided.
func (pw *PolicyWatcher) Stage(defaultGroup string) pipeline.Middleware {
	return func(next pipeline.Handler) pipeline.Handler {
		return &policyStage{pw: pw, next: next, deflt: defaultGroup}
	}
}

type policyStage struct {
	pw    *PolicyWatcher
	next  pipeline.Handler
	deflt string
	built atomic.Pointer[builtPolicy]
}

// builtPolicy is the policy stage of one version over next, built once
// per version by the first query that sees it.
type builtPolicy struct {
	v *PolicyVersion
	h pipeline.Handler
}

var _ pipeline.Handler = (*policyStage)(nil)

func (s *policyStage) ServeDNS(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
	v := s.pw.cur.Load()
	if v == nil {
		return s.next.ServeDNS(ctx, req)
	}
	b := s.built.Load()
	if b == nil || b.v != v {
		b = &builtPolicy{v: v, h: middleware.NewPolicy(v.Policy, s.deflt).Middleware(s.next)}
		s.built.Store(b)
	}
	return b.h.ServeDNS(ctx, req)
}
