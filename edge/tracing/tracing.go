// Package tracing exports a span per query and per upstream attempt
// through OpenTelemetry's OTLP exporter (HTTP), parented on the W3C
// traceparent a DoH client sent. It is off unless configured, and then
// costs nothing: the edge leaves the stage out of the chain.
package tracing

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/miekg/dns"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/internal/field"
	"github.com/dnsedge/dnsedge/transport"
)

// Config is the tracing section.
type Config struct {
	// OTLPEndpoint is the URL spans are posted to over OTLP/HTTP, such
	// as http://127.0.0.1:4318/v1/traces (https for TLS). Empty turns
	// tracing off.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// SampleRatio is the share of queries traced whose client did not
	// decide (a traceparent's sampled flag is followed): from 0 to 1,
	// default 1.
	SampleRatio *float64 `yaml:"sample_ratio"`
}

// On reports whether the section turns tracing on.
func (c Config) On() bool { return c.OTLPEndpoint != "" }

// ratio returns the sample ratio, 1 when unset.
func (c Config) ratio() float64 {
	if c.SampleRatio == nil {
		return 1
	}
	return *c.SampleRatio
}

// Validate reports every problem of the section.
func (c Config) Validate() error {
	var errs []error
	if c.OTLPEndpoint != "" {
		u, err := url.Parse(c.OTLPEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, field.Errorf("otlp_endpoint", "otlp_endpoint %q must be an http:// or https:// URL", c.OTLPEndpoint))
		}
	} else if c.SampleRatio != nil {
		errs = append(errs, field.Errorf("sample_ratio", "sample_ratio needs an otlp_endpoint"))
	}
	if r := c.ratio(); r < 0 || r > 1 {
		errs = append(errs, field.Errorf("sample_ratio", "sample_ratio %g must be from 0 to 1", r))
	}
	return errors.Join(errs...)
}

// Tracer makes the spans. It is safe for concurrent use.
type Tracer struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
}

// New starts exporting to cfg's endpoint. Spans are batched; the
// exporter connects lazily.
func New(cfg Config) (*Tracer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(cfg.OTLPEndpoint))
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	return NewWith(cfg, sdktrace.NewBatchSpanProcessor(exp)), nil
}

// NewWith returns a tracer whose spans go to sp (tests pass an in-process
// recorder).
func NewWith(cfg Config, sp sdktrace.SpanProcessor) *Tracer {
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSpanProcessor(sp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.ratio()))),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName("dnsedge"))),
	)
	return &Tracer{tp: tp, tracer: tp.Tracer("github.com/dnsedge/dnsedge")}
}

// Close flushes the spans still batched, for 5 seconds at most, and
// stops the exporter.
func (t *Tracer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return t.tp.Shutdown(ctx)
}

// Middleware runs a "dns.query" span around the rest of the chain. Its
// parent is the client's traceparent when one came; otherwise it starts
// a trace, and a query without a trace id takes the span's, so logs and
// spans agree. It must run before the trace stage.
func (t *Tracer) Middleware(next pipeline.Handler) pipeline.Handler {
	return pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		if sc, ok := remoteParent(req.TraceParent); ok {
			ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
		}
		q := req.Question()
		attrs := []attribute.KeyValue{
			attribute.String("dns.question.name", q.Name),
			attribute.String("dns.question.type", dns.TypeToString[q.Qtype]),
			attribute.String("dns.listener", req.Listener.String()),
		}
		if req.ClientID != "" {
			attrs = append(attrs, attribute.String("dns.client_id", req.ClientID))
		}
		if req.TraceStage != "" {
			attrs = append(attrs, attribute.String("service.stage", req.TraceStage))
		}
		if req.TraceID != "" {
			attrs = append(attrs, attribute.String("dns.trace_id", req.TraceID))
		}
		ctx, span := t.tracer.Start(ctx, "dns.query", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
		defer span.End()
		if req.TraceID == "" {
			req.TraceID = span.SpanContext().TraceID().String()
		}
		m, err := next.ServeDNS(ctx, req)
		if len(req.Tags) > 0 {
			span.SetAttributes(attribute.StringSlice("dns.tags", req.Tags))
		}
		if req.Outcome.Source != pipeline.SourceNone {
			span.SetAttributes(attribute.String("dns.source", req.Outcome.Source.String()))
		}
		switch {
		case err != nil:
			span.SetStatus(codes.Error, err.Error())
		case m != nil:
			span.SetAttributes(attribute.String("dns.rcode", dns.RcodeToString[m.Rcode]))
		}
		return m, err
	})
}

// Attempt is the transport.Meta hook: a "dns.upstream" client span per
// attempt, a child of the query's span, whose id DoH upstreams get as
// the parent of their traceparent.
func (t *Tracer) Attempt(ctx context.Context, path string) (context.Context, func(transport.Class, error)) {
	if !trace.SpanFromContext(ctx).SpanContext().IsValid() {
		return ctx, func(transport.Class, error) {}
	}
	ctx, span := t.tracer.Start(ctx, "dns.upstream", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("dns.path", path)))
	if m := transport.QueryMeta(ctx); m != nil {
		own := *m
		own.SpanID = span.SpanContext().SpanID().String()
		own.Sampled = span.SpanContext().IsSampled()
		own.Attempt = nil
		ctx = transport.WithQueryMeta(ctx, own)
	}
	return ctx, func(class transport.Class, err error) {
		span.SetAttributes(attribute.String("dns.outcome", class.String()))
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// remoteParent reads a W3C traceparent checked by the listener.
func remoteParent(tp string) (trace.SpanContext, bool) {
	if len(tp) != 55 {
		return trace.SpanContext{}, false
	}
	var tid trace.TraceID
	var sid trace.SpanID
	var flags [1]byte
	if _, err := hex.Decode(tid[:], []byte(tp[3:35])); err != nil {
		return trace.SpanContext{}, false
	}
	if _, err := hex.Decode(sid[:], []byte(tp[36:52])); err != nil {
		return trace.SpanContext{}, false
	}
	if _, err := hex.Decode(flags[:], []byte(tp[53:55])); err != nil {
		return trace.SpanContext{}, false
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.TraceFlags(flags[0]) & trace.FlagsSampled, Remote: true})
	return sc, sc.IsValid()
}
