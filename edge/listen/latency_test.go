package listen

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// TestLatencySources: every answer source has its own series, and the
// last one is really the last (a new Source must widen numSources).
func TestLatencySources(t *testing.T) {
	for i := range numSources {
		if name := pipeline.Source(i).String(); strings.HasPrefix(name, "source(") {
			t.Errorf("slot %d has no source name: %s", i, name)
		}
	}
	if name := pipeline.Source(numSources).String(); !strings.HasPrefix(name, "source(") {
		t.Errorf("source %q is past numSources: widen it", name)
	}
}

// TestLatencyHistograms: a served query is observed once, under its
// listener kind and its answer source; an error under "error"; a drop
// not at all; with histograms off nothing is registered or observed.
func TestLatencyHistograms(t *testing.T) {
	tests := []struct {
		name       string
		kind       pipeline.Kind
		source     pipeline.Source
		err        error
		histograms bool
		want       string // series "listener/source" observed once; "" for none
	}{
		{"cache hit over udp", pipeline.KindUDP, pipeline.SourceCache, nil, true, "udp/cache"},
		{"upstream over doh", pipeline.KindDoH, pipeline.SourceUpstream, nil, true, "doh/upstream"},
		{"stale over tcp", pipeline.KindTCP, pipeline.SourceStale, nil, true, "tcp/stale"},
		{"policy answer over dot", pipeline.KindDoT, pipeline.SourcePolicy, nil, true, "dot/policy"},
		{"local zone over doq", pipeline.KindDoQ, pipeline.SourceZone, nil, true, "doq/zone"},
		{"unclaimed answer", pipeline.KindUDP, pipeline.SourceNone, nil, true, "udp/none"},
		{"error wins over the source", pipeline.KindUDP, pipeline.SourceUpstream, errors.New("every path failed"), true, "udp/error"},
		{"drop is not observed", pipeline.KindUDP, pipeline.SourceUpstream, pipeline.ErrDrop, true, ""},
		{"histograms off", pipeline.KindUDP, pipeline.SourceCache, nil, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := newMetrics(reg, tt.histograms)
			req := &pipeline.Request{Listener: tt.kind}
			req.Outcome.Source, req.Outcome.Latency = tt.source, 1500*time.Microsecond
			m.kind(tt.kind).served(req, tt.err)

			n, err := testutil.GatherAndCount(reg, "dnsedge_query_duration_seconds")
			if err != nil {
				t.Fatal(err)
			}
			if !tt.histograms {
				if n != 0 {
					t.Fatalf("histograms off: %d series registered", n)
				}
				return
			}
			// Every kind × source (and error) is bound up front.
			if want := numKinds - 1; n != want*(numSources+1) {
				t.Errorf("%d series, want %d", n, want*(numSources+1))
			}
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			for _, mf := range mfs {
				if mf.GetName() != "dnsedge_query_duration_seconds" {
					continue
				}
				for _, s := range mf.GetMetric() {
					h := s.GetHistogram()
					if h.GetSampleCount() == 0 {
						continue
					}
					var l, src string
					for _, lp := range s.GetLabel() {
						switch lp.GetName() {
						case "listener":
							l = lp.GetValue()
						case "source":
							src = lp.GetValue()
						}
					}
					if got != "" || h.GetSampleCount() != 1 || h.GetSampleSum() != 0.0015 {
						t.Errorf("extra or wrong observation: %s/%s count %d sum %g", l, src, h.GetSampleCount(), h.GetSampleSum())
					}
					got = l + "/" + src
				}
			}
			if got != tt.want {
				t.Errorf("observed %q, want %q", got, tt.want)
			}
		})
	}
}

// TestLatencyNoAlloc: observing a query allocates nothing.
func TestLatencyNoAlloc(t *testing.T) {
	km := newMetrics(prometheus.NewRegistry(), true).kind(pipeline.KindUDP)
	req := &pipeline.Request{Listener: pipeline.KindUDP}
	req.Outcome.Source, req.Outcome.Latency = pipeline.SourceCache, time.Millisecond
	if n := testing.AllocsPerRun(100, func() { km.served(req, nil) }); n != 0 {
		t.Errorf("%v allocations per observation, want 0", n)
	}
}

// TestLatencyBucketsAgree: a series counts each duration in the bucket a
// prometheus.Histogram with the same bounds puts it in (a bound is
// inclusive), and its sum and count agree with it.
func TestLatencyBucketsAgree(t *testing.T) {
	durations := []time.Duration{
		0, 1, 50 * time.Microsecond, 50*time.Microsecond + 1, 99 * time.Microsecond,
		time.Millisecond, 2500 * time.Microsecond, 300 * time.Millisecond,
		time.Second, 5 * time.Second, 5*time.Second + 1, time.Minute,
	}
	c := newLatencyCollector()
	h := &c.series[pipeline.KindUDP][pipeline.SourceCache]
	oracle := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "oracle", Buckets: LatencyBuckets})
	for _, d := range durations {
		h.observe(d)
		oracle.Observe(d.Seconds())
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, oracle)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got, want *dto.Histogram
	for _, mf := range mfs {
		switch mf.GetName() {
		case "oracle":
			want = mf.GetMetric()[0].GetHistogram()
		case "dnsedge_query_duration_seconds":
			for _, s := range mf.GetMetric() {
				if s.GetHistogram().GetSampleCount() > 0 {
					got = s.GetHistogram()
				}
			}
		}
	}
	if got == nil || want == nil {
		t.Fatalf("series missing: got %v, oracle %v", got, want)
	}
	if got.GetSampleCount() != want.GetSampleCount() || math.Abs(got.GetSampleSum()-want.GetSampleSum()) > 1e-9 {
		t.Errorf("count %d sum %g, oracle %d %g", got.GetSampleCount(), got.GetSampleSum(), want.GetSampleCount(), want.GetSampleSum())
	}
	if len(got.GetBucket()) != len(want.GetBucket()) {
		t.Fatalf("%d buckets, oracle %d", len(got.GetBucket()), len(want.GetBucket()))
	}
	for i, b := range got.GetBucket() {
		w := want.GetBucket()[i]
		if b.GetUpperBound() != w.GetUpperBound() || b.GetCumulativeCount() != w.GetCumulativeCount() {
			t.Errorf("bucket le=%g: %d, oracle le=%g: %d", b.GetUpperBound(), b.GetCumulativeCount(), w.GetUpperBound(), w.GetCumulativeCount())
		}
	}
}
