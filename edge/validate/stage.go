package validate

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/dnssec"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// validator judges an answer; *dnssec.Validator is the one dnsedge uses.
type validator interface {
	Validate(ctx context.Context, q dns.Question, resp *dns.Msg) dnssec.Result
}

var _ validator = (*dnssec.Validator)(nil)

// Validation is the validation stage's long-lived state: the validator
// (with the DNSKEY and DS sets it keeps), the fetcher it asks through,
// the audit log and the counters. One is built per dnssec section and
// kept across reloads; each generation binds its chain to it (Bind). It
// is safe for concurrent use.
type Validation struct {
	v     validator
	f     *fetcher
	audit *Audit // nil without an audit log
	m     *metrics
	now   func() time.Time
}

// New returns the validation state for cfg (which Validate accepted):
// the validator, fetching through the chain bound later, and the audit
// log when cfg names one. now is the clock; time.Now when nil.
func New(cfg Config, now func() time.Time) (*Validation, error) {
	cfg = cfg.WithDefaults()
	dc, err := cfg.dnssecConfig()
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	f := &fetcher{now: now}
	v, err := dnssec.New(dc, f)
	if err != nil {
		return nil, err
	}
	audit, err := OpenAudit(cfg.AuditLog)
	if err != nil {
		return nil, err
	}
	return newValidation(v, f, audit, now), nil
}

func newValidation(v validator, f *fetcher, audit *Audit, now func() time.Time) *Validation {
	return &Validation{v: v, f: f, audit: audit, m: newMetrics(), now: now}
}

// Close closes the audit log, writing what it still holds.
func (v *Validation) Close() error {
	if v.audit == nil {
		return nil
	}
	return v.audit.Close()
}

// Bind returns the middleware of one chain, and the function that ends
// the binding when that chain's generation retires: the validator's
// fetches go to the next handler of the latest chain still bound.
func (v *Validation) Bind() (mw pipeline.Middleware, unbind func() error) {
	var unbinds []func()
	mw = func(next pipeline.Handler) pipeline.Handler {
		unbinds = append(unbinds, v.f.bind(next))
		return &handler{v: v, next: next}
	}
	return mw, func() error {
		for _, u := range unbinds {
			u()
		}
		return nil
	}
}

type handler struct {
	v    *Validation
	next pipeline.Handler
}

var _ pipeline.Handler = (*handler)(nil)

// ServeDNS validates the answer to req (RFC 4035 §4). A query with CD
// set is forwarded as it is and answered unvalidated, AD clear. Any other
// standard query is forwarded with DO and CD set, so that the answer
// comes with its signatures and the upstream's own validation hides
// nothing, and answered by the verdict:
//
//   - secure: AD set when the query had DO or AD (RFC 6840 §5.8), every
//     TTL capped by the validator's (signature lifetime, original TTL);
//   - insecure, indeterminate: AD clear;
//   - bogus: SERVFAIL with the verdict's Extended DNS Error (6, DNSSEC
//     Bogus, when it gives none).
//
// A client that did not set DO gets no RRSIG, NSEC, NSEC3 or DS record it
// did not ask for (RFC 4035 §3.2.1). The verdict goes to req.Outcome, the
// counters and the audit log. Failures of next are returned unvalidated.
func (h *handler) ServeDNS(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
	q := req.Msg
	if q.Opcode != dns.OpcodeQuery || len(q.Question) != 1 {
		return h.next.ServeDNS(ctx, req)
	}
	if q.CheckingDisabled {
		m, err := h.next.ServeDNS(ctx, req)
		if m != nil && m.AuthenticatedData {
			c := *m
			c.AuthenticatedData = false
			m = &c
		}
		return m, err
	}
	up := *req
	up.Msg = withDOCD(q)
	m, err := h.next.ServeDNS(ctx, &up)
	req.Outcome = up.Outcome
	if err != nil || m == nil {
		return m, err
	}
	res := h.v.v.Validate(ctx, req.Question(), m)
	verdict := verdictOf(res.Verdict)
	req.Outcome.DNSSEC = verdict
	ede, hasEDE := res.EDE, res.HasEDE
	bogus := res.Verdict == dnssec.Bogus
	if bogus && !hasEDE {
		ede, hasEDE = dns.ExtendedErrorCodeDNSBogus, true
	}
	if hasEDE {
		req.Outcome.SetEDE(ede, res.Reason)
	}
	rcode := m.Rcode
	if bogus {
		rcode = dns.RcodeServerFailure
	}
	h.v.m.count(verdict.String(), bogus, ede)
	h.v.log(req, res, verdict, rcode, ede, hasEDE)
	if bogus {
		return nil, &pipeline.Error{EDE: ede, Text: res.Reason, Err: errors.New("dnssec: bogus answer: " + res.Reason)}
	}
	var ttlCap uint32
	if res.Verdict == dnssec.Secure {
		ttlCap = res.TTL
	}
	out := rewrite(m, q, ttlCap)
	out.AuthenticatedData = res.Verdict == dnssec.Secure && wantsAD(q)
	if hasEDE && q.IsEdns0() != nil {
		addEDE(out, ede)
	}
	return out, nil
}

// log writes the audit record of one validation.
func (v *Validation) log(req *pipeline.Request, res dnssec.Result, verdict pipeline.DNSSECVerdict, rcode int, ede uint16, hasEDE bool) {
	if v.audit == nil {
		return
	}
	q := req.Question()
	r := Record{
		Timestamp:        v.now().UTC(),
		QName:            q.Name,
		QType:            dns.Type(q.Qtype).String(),
		Rcode:            dns.RcodeToString[rcode],
		ValidationStatus: verdict.String(),
		SignerKeyID:      res.KeyTag,
		RRSIGTTL:         res.RRSIGTTL,
		Signer:           res.Signer,
		Reason:           res.Reason,
		TraceID:          req.Trace(),
		Upstream:         req.Outcome.Path,
	}
	if req.Client.IsValid() {
		r.Client = req.Client.String()
	}
	if hasEDE {
		r.EDE = &ede
	}
	v.audit.Log(r)
}

func verdictOf(v dnssec.Verdict) pipeline.DNSSECVerdict {
	switch v {
	case dnssec.Secure:
		return pipeline.DNSSECSecure
	case dnssec.Insecure:
		return pipeline.DNSSECInsecure
	case dnssec.Bogus:
		return pipeline.DNSSECBogus
	}
	return pipeline.DNSSECIndeterminate
}

// wantsAD reports whether the query q may get AD: it had DO or AD (RFC
// 6840 §5.8).
func wantsAD(q *dns.Msg) bool {
	if q.AuthenticatedData {
		return true
	}
	opt := q.IsEdns0()
	return opt != nil && opt.Do()
}

// withDOCD returns a copy of q with CD set and an OPT record with DO set
// (the client's OPT, copied, or a new one).
func withDOCD(q *dns.Msg) *dns.Msg {
	c := *q
	c.CheckingDisabled = true
	c.Extra = make([]dns.RR, 0, len(q.Extra)+1)
	var has bool
	for _, rr := range q.Extra {
		if opt, ok := rr.(*dns.OPT); ok {
			o := dns.Copy(opt).(*dns.OPT)
			o.SetDo(true)
			rr, has = o, true
		}
		c.Extra = append(c.Extra, rr)
	}
	if !has {
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(1232)
		o.SetDo(true)
		c.Extra = append(c.Extra, o)
	}
	return &c
}

// rewrite returns the answer to q made of m: without the DNSSEC records
// q did not ask for when q had no DO, and with every TTL capped by ttlCap
// when it is not zero. m is not modified; records that change are
// copies, sections that change new slices.
func rewrite(m *dns.Msg, q *dns.Msg, ttlCap uint32) *dns.Msg {
	out := *m
	strip := !wantsDO(q)
	qtype := q.Question[0].Qtype
	fix := func(sec []dns.RR) []dns.RR {
		var res []dns.RR // nil until something changes
		for i, rr := range sec {
			h := rr.Header()
			drop := strip && h.Rrtype != qtype && isDNSSECType(h.Rrtype)
			lower := ttlCap > 0 && h.Rrtype != dns.TypeOPT && h.Ttl > ttlCap
			if !drop && !lower {
				if res != nil {
					res = append(res, rr)
				}
				continue
			}
			if res == nil {
				res = slices.Clone(sec[:i])
			}
			if drop {
				continue
			}
			c := dns.Copy(rr)
			c.Header().Ttl = ttlCap
			res = append(res, c)
		}
		if res == nil {
			return sec
		}
		return res
	}
	out.Answer, out.Ns, out.Extra = fix(m.Answer), fix(m.Ns), fix(m.Extra)
	return &out
}

func wantsDO(q *dns.Msg) bool {
	opt := q.IsEdns0()
	return opt != nil && opt.Do()
}

// isDNSSECType reports whether t is a type a client without DO does not
// get unless it asks for it (RFC 4035 §3.2.1; DS too, which only a
// DNSSEC-aware client needs).
func isDNSSECType(t uint16) bool {
	switch t {
	case dns.TypeRRSIG, dns.TypeNSEC, dns.TypeNSEC3, dns.TypeDS:
		return true
	}
	return false
}

// addEDE adds an Extended DNS Error option to out's OPT record (copied:
// the reply's records may be shared).
func addEDE(out *dns.Msg, code uint16) {
	extra := slices.Clone(out.Extra)
	for i, rr := range extra {
		if opt, ok := rr.(*dns.OPT); ok {
			o := dns.Copy(opt).(*dns.OPT)
			o.Option = append(slices.Clip(o.Option), &dns.EDNS0_EDE{InfoCode: code})
			extra[i] = o
			out.Extra = extra
			return
		}
	}
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	o.SetUDPSize(1232)
	o.Option = []dns.EDNS0{&dns.EDNS0_EDE{InfoCode: code}}
	out.Extra = append(extra, o)
}
