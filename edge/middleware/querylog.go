package middleware

import (
	"context"
	"log/slog"
	"time"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/miekg/dns"
)

// QueryLog logs every query with its answer at info level: who asked what
// over which listener, the rcode, and how long it took.
type QueryLog struct{ log *slog.Logger }

// NewQueryLog returns a query logger writing to log.
func NewQueryLog(log *slog.Logger) *QueryLog { return &QueryLog{log: log} }

// Middleware logs after next has answered.
func (l *QueryLog) Middleware(next pipeline.Handler) pipeline.Handler {
	return pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m, err := next.ServeDNS(ctx, req)
		q := req.Question()
		attrs := []slog.Attr{
			slog.String("listener", req.Listener.String()),
			slog.String("client", req.Client.String()),
			slog.String("name", q.Name),
			slog.String("type", dns.TypeToString[q.Qtype]),
			slog.Duration("duration", time.Since(req.Received)),
		}
		if req.ClientID != "" {
			attrs = append(attrs, slog.String("client_id", req.ClientID))
		}
		switch {
		case err != nil:
			attrs = append(attrs, slog.String("rcode", "SERVFAIL"), slog.String("error", err.Error()))
		case m != nil:
			attrs = append(attrs, slog.String("rcode", dns.RcodeToString[m.Rcode]), slog.Int("answers", len(m.Answer)))
		}
		l.log.LogAttrs(ctx, slog.LevelInfo, "query", attrs...)
		return m, err
	})
}
