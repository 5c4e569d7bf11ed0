package middleware

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/miekg/dns"
)

// QueryLog logs every query with its answer at info level, one "query"
// line each with these keys:
//
//   - listener, client, name, type: who asked what, over which listener;
//   - client_id and tenant, when the query has them;
//   - trace_id (every query has one once the trace stage ran), and
//     trace_stage (the DoH client's X-DNS-Stage), tags (policy's and a
//     trusted client's, comma-joined) and ecs (the subnet forwarded),
//     when the query has them;
//   - rcode, and answers (the answer section's length) or error; a
//     dropped query has only error;
//   - source: where the answer came from (pipeline.Source: upstream,
//     cache, stale, zone, tenant_zone, fallback, synthesized), left out
//     when no stage claimed it; coalesced: true when the answer was an
//     identical query's, waited for;
//   - path: the upstream path that answered, when one did;
//   - ede and ede_text: the Extended DNS Error (RFC 8914) of the answer,
//     when there is one: the handler's *pipeline.Error's, else the one a
//     stage recorded (stale answers, fallback answers, see
//     pipeline.Request.EDE), else the first EDE option of the answer (an
//     upstream's);
//   - rule and dnssec, once policy and DNSSEC validation fill them;
//   - tsig: what TSIG verification found (pipeline.TSIGState: verified,
//     badkey, badsig, badtime, unsigned_refused), for signed queries and
//     refused unsigned ones;
//   - duration_ms: the time since the listener received the query, in
//     milliseconds with microsecond precision.
//
// It sets req.Outcome.Latency to that duration.
type QueryLog struct{ log *slog.Logger }

// NewQueryLog returns a query logger writing to log.
func NewQueryLog(log *slog.Logger) *QueryLog { return &QueryLog{log: log} }

// Middleware logs after next has answered.
func (l *QueryLog) Middleware(next pipeline.Handler) pipeline.Handler {
	return pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m, err := next.ServeDNS(ctx, req)
		o := &req.Outcome
		o.Latency = time.Since(req.Received)
		q := req.Question()
		var buf [24]slog.Attr
		attrs := append(buf[:0],
			slog.String("listener", req.Listener.String()),
			slog.String("client", req.Client.String()),
			slog.String("name", q.Name),
			slog.String("type", dns.TypeToString[q.Qtype]),
			slog.Float64("duration_ms", durationMS(o.Latency)),
		)
		if req.ClientID != "" {
			attrs = append(attrs, slog.String("client_id", req.ClientID))
		}
		if o.Tenant != "" {
			attrs = append(attrs, slog.String("tenant", o.Tenant))
		}
		if id := req.Trace(); id != "" {
			attrs = append(attrs, slog.String("trace_id", id))
		}
		if req.TraceStage != "" {
			attrs = append(attrs, slog.String("trace_stage", req.TraceStage))
		}
		if len(req.Tags) > 0 {
			attrs = append(attrs, slog.String("tags", string(appendTagData(nil, req.Tags))))
		}
		if req.ECS.IsValid() {
			attrs = append(attrs, slog.String("ecs", req.ECS.String()))
		}
		if req.TSIG != pipeline.TSIGNone {
			attrs = append(attrs, slog.String("tsig", req.TSIG.String()))
		}
		switch {
		case errors.Is(err, pipeline.ErrDrop):
			attrs = append(attrs, slog.String("error", err.Error()))
		case err != nil:
			attrs = append(attrs, slog.String("rcode", dns.RcodeToString[errorRcode(err)]), slog.String("error", err.Error()))
		case m != nil:
			attrs = append(attrs, slog.String("rcode", dns.RcodeToString[m.Rcode]), slog.Int("answers", len(m.Answer)))
		}
		if o.Source != pipeline.SourceNone {
			attrs = append(attrs, slog.String("source", o.Source.String()))
		}
		if o.Coalesced {
			attrs = append(attrs, slog.Bool("coalesced", true))
		}
		if o.Path != "" {
			attrs = append(attrs, slog.String("path", o.Path))
		}
		code, text, ok := req.EDE(err)
		if !ok && m != nil {
			code, text, ok = replyEDE(m)
		}
		if ok {
			attrs = append(attrs, slog.Int("ede", int(code)))
			if text != "" {
				attrs = append(attrs, slog.String("ede_text", text))
			}
		}
		if o.Policy != "" {
			attrs = append(attrs, slog.String("policy_version", o.Policy))
		}
		if o.Rule != "" {
			attrs = append(attrs, slog.String("rule", o.Rule))
		}
		if o.DNSSEC != pipeline.DNSSECNone {
			attrs = append(attrs, slog.String("dnssec", o.DNSSEC.String()))
		}
		l.log.LogAttrs(ctx, slog.LevelInfo, "query", attrs...)
		return m, err
	})
}

// durationMS is d in milliseconds, rounded to the microsecond.
func durationMS(d time.Duration) float64 {
	return float64(d.Round(time.Microsecond)/time.Microsecond) / 1000
}

// replyEDE returns the first Extended DNS Error option of m, an answer
// that carries one of an upstream's.
func replyEDE(m *dns.Msg) (code uint16, text string, ok bool) {
	opt := m.IsEdns0()
	if opt == nil {
		return 0, "", false
	}
	for _, o := range opt.Option {
		if e, isEDE := o.(*dns.EDNS0_EDE); isEDE {
			return e.InfoCode, e.ExtraText, true
		}
	}
	return 0, "", false
}

// errorRcode is the RCODE a listener answers err with (see
// pipeline.ErrorReply).
func errorRcode(err error) int {
	var pe *pipeline.Error
	if errors.As(err, &pe) && pe.Rcode != 0 {
		return pe.Rcode
	}
	return dns.RcodeServerFailure
}
