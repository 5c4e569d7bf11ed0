package middleware

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/cache"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	zones "github.com/dnsedge/dnsedge/edge/zone"
	"github.com/dnsedge/dnsedge/transport"
)

// TestQueryLogSources runs queries through the stages that answer them, in
// the order the server chains them (query log, fallback zone, local and
// tenant zones, cache, forward), and checks the query log line of the
// last query of each case.
func TestQueryLogSources(t *testing.T) {
	t.Parallel()
	type step struct {
		name     string
		clientID string
		fail     bool          // every upstream path refuses from this query on
		advance  time.Duration // the clock moves this much before the query
	}
	tests := []struct {
		name  string
		steps []step // the last one is logged and checked
		want  map[string]any
		// absent are keys the line must not have.
		absent []string
	}{
		{
			name:  "upstream",
			steps: []step{{name: "www.example.org."}},
			want: map[string]any{"source": "upstream", "path": "u/udp/192.0.2.1:53", "rcode": "NOERROR",
				"answers": 1.0, "listener": "udp", "name": "www.example.org.", "type": "A"},
			absent: []string{"ede", "tenant", "client_id", "coalesced"},
		},
		{
			name:  "upstream with an EDE of its own",
			steps: []step{{name: "filtered.example.org."}},
			want: map[string]any{"source": "upstream", "rcode": "NOERROR",
				"ede": float64(dns.ExtendedErrorCodeFiltered), "ede_text": "filtered upstream"},
		},
		{
			name:   "cache hit",
			steps:  []step{{name: "www.example.org."}, {name: "www.example.org.", advance: time.Second}},
			want:   map[string]any{"source": "cache", "rcode": "NOERROR", "answers": 1.0},
			absent: []string{"path", "ede"},
		},
		{
			name:  "stale",
			steps: []step{{name: "www.example.org."}, {name: "www.example.org.", advance: 2 * time.Minute, fail: true}},
			want: map[string]any{"source": "stale", "rcode": "NOERROR", "answers": 1.0,
				"ede": float64(dns.ExtendedErrorCodeStaleAnswer), "ede_text": "served stale (RFC 8767): upstream unreachable"},
			absent: []string{"path"},
		},
		{
			name:   "zone",
			steps:  []step{{name: "www.zone.test."}},
			want:   map[string]any{"source": "zone", "rcode": "NOERROR", "answers": 1.0},
			absent: []string{"path", "tenant"},
		},
		{
			name:  "tenant zone",
			steps: []step{{name: "app.acme.test.", clientID: "phone-1"}},
			want:  map[string]any{"source": "tenant_zone", "tenant": "acme", "client_id": "phone-1", "answers": 1.0},
		},
		{
			name:  "tenant answered upstream",
			steps: []step{{name: "www.example.org.", clientID: "phone-1"}},
			want:  map[string]any{"source": "upstream", "tenant": "acme", "client_id": "phone-1", "path": "u/udp/192.0.2.1:53"},
		},
		{
			name:  "fallback",
			steps: []step{{name: "host.fb.test.", fail: true}},
			want: map[string]any{"source": "fallback", "rcode": "NOERROR", "answers": 1.0,
				"ede": float64(dns.ExtendedErrorCodeNoReachableAuthority), "ede_text": "answer from fallback zone: upstreams unreachable"},
			absent: []string{"path", "error"},
		},
		{
			name:  "failure with EDE",
			steps: []step{{name: "www.example.org.", fail: true}},
			want: map[string]any{"rcode": "SERVFAIL",
				"ede": float64(dns.ExtendedErrorCodeNetworkError), "ede_text": "upstreams unreachable"},
			absent: []string{"source", "path", "answers"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				logs  bytes.Buffer
				fail  atomic.Bool
				clock atomic.Int64
			)
			clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
			h := sourcesChain(t, &logs, &fail, func() time.Time { return time.Unix(0, clock.Load()) })
			for _, s := range tt.steps {
				clock.Add(int64(s.advance))
				fail.Store(fail.Load() || s.fail)
				logs.Reset()
				req := request(dns.TypeA, true, false, false)
				req.Msg.Question[0].Name = s.name
				req.ClientID = s.clientID
				req.Received = time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				h.ServeDNS(ctx, req)
				cancel()
			}
			var line map[string]any
			if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
				t.Fatalf("log line %q: %v", logs.String(), err)
			}
			for k, v := range tt.want {
				if line[k] != v {
					t.Errorf("%s = %v, want %v", k, line[k], v)
				}
			}
			for _, k := range tt.absent {
				if v, ok := line[k]; ok {
					t.Errorf("%s = %v, want none", k, v)
				}
			}
			if d, ok := line["duration_ms"].(float64); !ok || d < 0 || d > 2000 {
				t.Errorf("duration_ms = %v", line["duration_ms"])
			}
			if _, ok := line["duration"]; ok {
				t.Error("the raw nanosecond duration is still logged")
			}
			if t.Failed() {
				t.Logf("log: %s", logs.String())
			}
		})
	}
}

// sourcesChain builds query log → fallback zone → zones → cache → forward,
// the forward's one path answering every query with an A record unless
// fail is set, when it refuses.
func sourcesChain(t *testing.T, logs *bytes.Buffer, fail *atomic.Bool, now func() time.Time) pipeline.Handler {
	t.Helper()
	up := &capture{reply: func(q *dns.Msg) (*dns.Msg, error) {
		if fail.Load() {
			return nil, &transport.ExchangeError{Class: transport.ClassNetwork, Err: errors.New("connection refused")}
		}
		m := new(dns.Msg)
		m.SetReply(q)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: []byte{192, 0, 2, 10}}}
		if q.Question[0].Name == "filtered.example.org." {
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeFiltered, ExtraText: "filtered upstream"}}
		}
		return m, nil
	}}
	z, err := zones.New(zones.Config{
		Zones: []zones.ZoneSpec{{Origin: "zone.test.", Records: []string{"www 60 IN A 10.0.0.1"}}},
		Tenants: []zones.TenantSpec{{Name: "acme", ClientIDs: []string{"phone-1"},
			Zones: []zones.ZoneSpec{{Origin: "acme.test.", Records: []string{"app 60 IN A 10.0.0.2"}}}}},
		Fallback: []zones.ZoneSpec{{Origin: "fb.test.", Records: []string{"* 300 IN A 127.0.0.1"}}},
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { z.Close() })
	c, err := cache.New(cache.Config{Now: now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ql := NewQueryLog(slog.New(slog.NewJSONHandler(logs, nil)))
	return pipeline.Chain(forwardTo(t, up, nil), ql.Middleware, z.Fallback(), z.Middleware(), c.Middleware())
}

func TestDurationMS(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want float64
	}{
		{0, 0},
		{1500 * time.Nanosecond, 0.002},
		{12*time.Millisecond + 345*time.Microsecond + 499*time.Nanosecond, 12.345},
		{2 * time.Second, 2000},
	} {
		if got := durationMS(tt.d); got != tt.want {
			t.Errorf("durationMS(%v) = %v, want %v", tt.d, got, tt.want)
		}
	}
}
