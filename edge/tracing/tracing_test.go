package tracing

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/dnsedge/dnsedge/edge/middleware"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/transport"
)

// metaExchanger answers every query and records the Meta it was sent
// with.
type metaExchanger struct{ got chan transport.Meta }

func (e *metaExchanger) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	if m := transport.QueryMeta(ctx); m != nil {
		e.got <- *m
	} else {
		e.got <- transport.Meta{}
	}
	return new(dns.Msg).SetReply(q), nil
}
func (e *metaExchanger) Close() error { return nil }

// chain is tracing → trace ids → forward to one path answered by ex.
func chain(t *testing.T, tr *Tracer, ex transport.Exchanger) pipeline.Handler {
	t.Helper()
	up, err := transport.NewUpstream(transport.UpstreamConfig{
		Name: "u", Endpoint: transport.Endpoint{Scheme: "udp", Addr: netip.MustParseAddr("192.0.2.1"), Port: 53},
	}, transport.UpstreamDeps{Registry: transport.NewRegistry(transport.HealthConfig{}, nil)})
	if err != nil {
		t.Fatal(err)
	}
	up.Paths()[0].Exchanger = ex
	s, _ := transport.NewStrategy("sequential")
	g := transport.NewGroup("default", s, transport.RaceConfig{}, up)
	f, err := middleware.NewForward(map[string]*transport.Group{"default": g}, "default", nil, middleware.Carry{Attempt: tr.Attempt})
	if err != nil {
		t.Fatal(err)
	}
	return pipeline.Chain(f, tr.Middleware, middleware.Trace)
}

func query() *pipeline.Request {
	q := new(dns.Msg)
	q.SetQuestion("www.example.org.", dns.TypeA)
	return &pipeline.Request{Msg: q, Listener: pipeline.KindDoH, Client: netip.MustParseAddrPort("192.0.2.9:443")}
}

// TestSpans: a query span parented on the client's traceparent, an
// upstream span under it whose id the DoH upstream gets as its parent,
// and without a traceparent a new trace whose id the query takes.
func TestSpans(t *testing.T) {
	t.Parallel()
	const tid, pid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	cases := []struct {
		name, parent string
		wantSampled  bool
	}{
		{"parented, sampled", "00-" + tid + "-" + pid + "-01", true},
		{"parented, not sampled", "00-" + tid + "-" + pid + "-00", false},
		{"new trace", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tr := NewWith(Config{}, rec)
			ex := &metaExchanger{got: make(chan transport.Meta, 1)}
			h := chain(t, tr, ex)
			req := query()
			req.TraceParent, req.TraceStage = tc.parent, "canary"
			if tc.parent != "" {
				req.TraceID = tid
			}
			if _, err := h.ServeDNS(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			meta := <-ex.got
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
			spans := rec.Ended()
			if !tc.wantSampled {
				if len(spans) != 0 {
					t.Fatalf("%d spans recorded for an unsampled parent", len(spans))
				}
				if meta.Sampled || meta.TraceID != tid {
					t.Errorf("upstream meta %+v, want trace %s unsampled", meta, tid)
				}
				return
			}
			var qs, us sdktrace.ReadOnlySpan
			for _, s := range spans {
				switch s.Name() {
				case "dns.query":
					qs = s
				case "dns.upstream":
					us = s
				}
			}
			if qs == nil || us == nil {
				t.Fatalf("spans %v, want dns.query and dns.upstream", spans)
			}
			if got := qs.SpanContext().TraceID().String(); got != req.TraceID {
				t.Errorf("query span trace %s, request trace id %s", got, req.TraceID)
			}
			if tc.parent != "" && (qs.Parent().SpanID().String() != pid || !qs.Parent().IsRemote()) {
				t.Errorf("query span parent %v, want remote %s", qs.Parent(), pid)
			}
			if tc.parent == "" && qs.Parent().IsValid() {
				t.Errorf("query span has parent %v", qs.Parent())
			}
			if us.Parent().SpanID() != qs.SpanContext().SpanID() || us.SpanKind() != trace.SpanKindClient {
				t.Errorf("upstream span parent %v kind %v, want the query span", us.Parent().SpanID(), us.SpanKind())
			}
			if meta.SpanID != us.SpanContext().SpanID().String() || meta.TraceID != req.TraceID || !meta.Sampled {
				t.Errorf("upstream meta %+v, want span %s of trace %s sampled", meta, us.SpanContext().SpanID(), req.TraceID)
			}
			attrs := map[string]string{}
			for _, a := range qs.Attributes() {
				attrs[string(a.Key)] = a.Value.Emit()
			}
			for k, v := range map[string]string{"dns.question.name": "www.example.org.", "dns.question.type": "A", "dns.listener": "doh", "service.stage": "canary", "dns.rcode": "NOERROR", "dns.source": "upstream"} {
				if attrs[k] != v {
					t.Errorf("query span %s = %q, want %q", k, attrs[k], v)
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	half, two := 0.5, 2.0
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"off", Config{}, ""},
		{"on", Config{OTLPEndpoint: "http://127.0.0.1:4318/v1/traces", SampleRatio: &half}, ""},
		{"bad url", Config{OTLPEndpoint: "127.0.0.1:4318"}, "must be an http:// or https:// URL"},
		{"ratio", Config{OTLPEndpoint: "https://otel.example/v1/traces", SampleRatio: &two}, "sample_ratio 2 must be from 0 to 1"},
		{"ratio alone", Config{SampleRatio: &half}, "sample_ratio needs an otlp_endpoint"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
