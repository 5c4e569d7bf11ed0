package listen

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// TestDoHJSONComment checks that the JSON API says why an answer is what
// it is, whether the query asked for DNSSEC data (do=1) or not.
func TestDoHJSONComment(t *testing.T) {
	t.Parallel()
	withEDE := func(m *dns.Msg, code uint16, text string) *dns.Msg {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.Option = []dns.EDNS0{&dns.EDNS0_EDE{InfoCode: code, ExtraText: text}}
		m.Extra = append(m.Extra, opt)
		return m
	}
	tests := []struct {
		name  string
		serve func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error)
		want  string
	}{
		{name: "plain answer", serve: answerA, want: ""},
		{
			name: "failure with EDE text",
			serve: func(context.Context, *pipeline.Request) (*dns.Msg, error) {
				return nil, &pipeline.Error{EDE: dns.ExtendedErrorCodeNetworkError, Text: "upstreams unreachable"}
			},
			want: "upstreams unreachable",
		},
		{
			name: "failure without a pipeline.Error",
			serve: func(context.Context, *pipeline.Request) (*dns.Msg, error) {
				return nil, errors.New("boom")
			},
			want: "Other", // the name of EDE 0
		},
		{
			name: "stale answer",
			serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
				// As the cache answers: EDE 3 without text on the wire,
				// the reason in the outcome.
				m, _ := answerA(ctx, req)
				req.Outcome.Source = pipeline.SourceStale
				req.Outcome.SetEDE(dns.ExtendedErrorCodeStaleAnswer, "served stale (RFC 8767): upstream unreachable")
				return withEDE(m, dns.ExtendedErrorCodeStaleAnswer, ""), nil
			},
			want: "served stale (RFC 8767): upstream unreachable",
		},
		{
			name: "fallback answer",
			serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
				m, _ := answerA(ctx, req)
				req.Outcome.Source = pipeline.SourceFallback
				req.Outcome.SetEDE(dns.ExtendedErrorCodeNoReachableAuthority, "answer from fallback zone: upstreams unreachable")
				return withEDE(m, dns.ExtendedErrorCodeNoReachableAuthority, "answer from fallback zone"), nil
			},
			want: "answer from fallback zone: upstreams unreachable",
		},
		{
			name: "upstream EDE",
			serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
				m, _ := answerA(ctx, req)
				return withEDE(m, dns.ExtendedErrorCodeBlocked, "blocked by policy"), nil
			},
			want: "blocked by policy",
		},
	}
	pki := testTLS(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := startDoH(t, dohTestConfig(t, fam4, &fakeHandler{t: t, serve: tt.serve}, pki))
			c := newDoHClient(t, "h2", l, pki.roots)
			for _, q := range []string{"name=example.org", "name=example.org&do=1"} {
				res := c.do(t, http.MethodGet, DefaultHTTPPath+"?"+q, nil, nil)
				var got jsonReply
				if err := json.Unmarshal(res.body, &got); err != nil {
					t.Fatalf("%s: %s: %v", q, res.body, err)
				}
				if got.Comment != tt.want {
					t.Errorf("%s: Comment %q, want %q", q, got.Comment, tt.want)
				}
			}
		})
	}
}
