package tsig

import (
	"context"
	"fmt"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/internal/promreg"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// Metrics counts queries by TSIG result. One Metrics may serve several
// generations in turn; it is safe for concurrent use.
type Metrics struct {
	results *prometheus.CounterVec
	byState [len(stateLabels)]prometheus.Counter
}

// stateLabels are the result label values, by pipeline.TSIGState; the
// unsigned queries nobody required a TSIG of are not counted.
var stateLabels = [...]string{
	pipeline.TSIGVerified: "verified",
	pipeline.TSIGBadKey:   "badkey",
	pipeline.TSIGBadSig:   "badsig",
	pipeline.TSIGBadTime:  "badtime",
	pipeline.TSIGRequired: "unsigned_refused",
}

// NewMetrics returns the counters, registered with nobody yet.
func NewMetrics() *Metrics {
	m := &Metrics{results: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "dnsedge", Subsystem: "tsig", Name: "queries_total",
		Help: "Signed queries by TSIG verification result (verified, badkey, badsig, badtime), and unsigned queries refused where TSIG is required (unsigned_refused).",
	}, []string{"result"})}
	for s, l := range stateLabels {
		if l != "" {
			m.byState[s] = m.results.WithLabelValues(l)
		}
	}
	return m
}

// Register registers the counters with reg (nil: none), replacing those
// of a previous generation's.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	if err := promreg.Replace(reg, m.results); err != nil {
		return fmt.Errorf("tsig: register metrics: %w", err)
	}
	return nil
}

// Count adds one query of state s.
func (m *Metrics) Count(s pipeline.TSIGState) {
	if m == nil || int(s) >= len(m.byState) || m.byState[s] == nil {
		return
	}
	m.byState[s].Inc()
}

// Stage verifies the TSIG of every signed query and arranges for the
// listener to sign the reply (pipeline.Request.Signer):
//
//   - verified: req.TSIG is TSIGVerified and the answer is signed with
//     the same key, chained to the query's MAC (RFC 8945 §5.3);
//   - bad MAC: NOTAUTH with TSIG error BADSIG, unsigned (§5.2.2, §5.3.2);
//   - outside the fudge window: NOTAUTH with TSIG error BADTIME, signed,
//     the server's time in the other data (§5.2.3);
//   - a key dnsedge does not hold: req.TSIG is TSIGBadKey and the query
//     goes on, so that the forwarder may pass it unchanged to a server
//     that holds the key (§5.5) and relay its answer; an answer from
//     anywhere else (a zone, a policy, a cache) would be dnsedge's own,
//     and becomes NOTAUTH with TSIG error BADKEY, unsigned (§5.2.1).
//
// A query that arrived without a wire form (DoH JSON) but with a TSIG
// record cannot be verified and is BADSIG. An unsigned query that
// arrived where TSIG is required (a listener's tsig: required) is
// REFUSED, with req.TSIG set to TSIGRequired.
type Stage struct {
	kr       *Keyring
	m        *Metrics
	required func(*pipeline.Request) bool
}

// NewStage returns the stage over kr (nil: no key is held, so every
// signed query is TSIGBadKey) counting into m (nil: uncounted). required
// (nil: nowhere) tells whether an unsigned query must be refused.
func NewStage(kr *Keyring, m *Metrics, required func(*pipeline.Request) bool) *Stage {
	if kr == nil {
		kr, _ = New(Config{}, nil)
	}
	return &Stage{kr: kr, m: m, required: required}
}

// Refused is the reply to an unsigned query where TSIG is required.
func Refused(q *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(q, dns.RcodeRefused)
	return m
}

// Middleware verifies in front of next.
func (s *Stage) Middleware(next pipeline.Handler) pipeline.Handler {
	return pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		if req.Msg.IsTsig() == nil {
			if s.required != nil && s.required(req) {
				req.TSIG = pipeline.TSIGRequired
				s.m.Count(pipeline.TSIGRequired)
				return Refused(req.Msg), nil
			}
			m, err := next.ServeDNS(ctx, req)
			if req.TSIG == pipeline.TSIGRequired {
				// A policy rule required it.
				s.m.Count(pipeline.TSIGRequired)
			}
			return m, err
		}
		r := s.kr.Verify(req.Wire, req.Msg, "")
		req.TSIG = r.State
		s.m.Count(r.State)
		switch r.State {
		case pipeline.TSIGVerified:
			req.TSIGKey = dns.CanonicalName(r.TSIG.Hdr.Name)
			req.Signer = &replySigner{kr: s.kr, k: s.kr.lookup(r.TSIG), req: r.TSIG}
			return next.ServeDNS(ctx, req)
		case pipeline.TSIGBadSig:
			req.Signer = &replySigner{kr: s.kr, req: r.TSIG, err: dns.RcodeBadSig}
			return NotAuth(req.Msg), nil
		case pipeline.TSIGBadTime:
			req.Signer = &replySigner{kr: s.kr, k: s.kr.lookup(r.TSIG), req: r.TSIG, err: dns.RcodeBadTime}
			return NotAuth(req.Msg), nil
		}
		// TSIGBadKey.
		m, err := next.ServeDNS(ctx, req)
		if err != nil || (req.Outcome.Source == pipeline.SourceUpstream && !req.Outcome.Coalesced) {
			return m, err
		}
		req.Signer = &replySigner{kr: s.kr, req: r.TSIG, err: dns.RcodeBadKey}
		return NotAuth(req.Msg), nil
	})
}

// NotAuth is the body of a TSIG error reply to q: NOTAUTH with q's
// question and nothing else (RFC 8945 §5.2); the signer adds the TSIG
// record with the error.
func NotAuth(q *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(q, dns.RcodeNotAuth)
	return m
}
