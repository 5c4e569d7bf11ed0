package validate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/transport"
)

// errNoUpstream is returned by a fetch made while no chain is bound.
var errNoUpstream = errors.New("dnssec fetch: no upstream handler bound")

// fetcher is the validator's dnssec.Fetcher: it asks the handler after
// the validation stage (forward: the default upstream group) for a name
// and type with DO and CD set, as a query of dnsedge's own
// (KindInternal). The validator outlives configuration generations, the
// handlers it asks do not: each generation binds its handler while it
// lives (bind), and the latest bound one still alive is asked. It is
// safe for concurrent use.
type fetcher struct {
	mu    sync.Mutex
	nexts []*binding // oldest first
	now   func() time.Time
}

type binding struct{ next pipeline.Handler }

// bind makes next the handler fetches go to, until the returned function
// is called; then the handler bound before it, if still bound, takes
// over again.
func (f *fetcher) bind(next pipeline.Handler) (unbind func()) {
	b := &binding{next: next}
	f.mu.Lock()
	f.nexts = append(f.nexts, b)
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, x := range f.nexts {
			if x == b {
				f.nexts = append(f.nexts[:i:i], f.nexts[i+1:]...)
				return
			}
		}
	}
}

func (f *fetcher) current() pipeline.Handler {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.nexts); n > 0 {
		return f.nexts[n-1].next
	}
	return nil
}

// Fetch asks for name and qtype with RD, DO and CD set and returns the
// whole response. A handler error is returned as it is; a response
// whose question is not the one asked is an error.
func (f *fetcher) Fetch(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	next := f.current()
	if next == nil {
		return nil, errNoUpstream
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.CheckingDisabled = true
	q.SetEdns0(transport.EDNSBufferSize, true)
	m, err := next.ServeDNS(ctx, &pipeline.Request{
		Msg:      q,
		Listener: pipeline.KindInternal,
		Received: f.now(),
		MaxSize:  dns.MaxMsgSize,
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("dnssec fetch %s %s: %w", name, dns.Type(qtype), err)
	case m == nil:
		return nil, fmt.Errorf("dnssec fetch %s %s: no answer", name, dns.Type(qtype))
	case len(m.Question) != 1 || m.Question[0].Qtype != qtype || !equalNames(m.Question[0].Name, q.Question[0].Name):
		return nil, fmt.Errorf("dnssec fetch %s %s: answer to another question", name, dns.Type(qtype))
	}
	return m, nil
}

func equalNames(a, b string) bool { return dns.CanonicalName(a) == dns.CanonicalName(b) }
