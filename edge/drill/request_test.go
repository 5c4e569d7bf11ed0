package drill

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/internal/field"
	"github.com/dnsedge/dnsedge/transport"
)

var testConfig = Config{MaxDuration: 10 * time.Minute}.WithDefaults()

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Spec
		// errs are the field paths of the problems, in order; none when
		// the request is good.
		errs []string
	}{
		{name: "drop on an upstream, default duration",
			body: `{"target": {"upstream": "up"}, "fault": {"type": "drop"}}`,
			want: Spec{Target: Target{Upstream: "up"}, Fault: transport.Fault{Kind: transport.FaultDrop}, Duration: time.Minute}},
		{name: "every filter",
			body: `{"target": {"upstream": "up", "address": "[::1]:53", "family": "v6", "protocol": "UDP"}, "fault": {"type": "drop"}, "duration": "90s"}`,
			want: Spec{Target: Target{Upstream: "up", Addr: netip.MustParseAddr("::1"), Port: 53, Family: transport.IPv6, Proto: "udp"},
				Fault: transport.Fault{Kind: transport.FaultDrop}, Duration: 90 * time.Second}},
		{name: "IPv4-mapped address is IPv4",
			body: `{"target": {"upstream": "up", "address": "::ffff:192.0.2.1", "family": "ipv4"}, "fault": {"type": "servfail"}}`,
			want: Spec{Target: Target{Upstream: "up", Addr: netip.MustParseAddr("192.0.2.1"), Family: transport.IPv4},
				Fault: transport.Fault{Kind: transport.FaultServfail}, Duration: time.Minute}},
		{name: "delay",
			body: `{"target": {"upstream": "up"}, "fault": {"type": "delay", "delay": "150ms"}, "duration": "10m"}`,
			want: Spec{Target: Target{Upstream: "up"}, Fault: transport.Fault{Kind: transport.FaultDelay, Delay: 150 * time.Millisecond}, Duration: 10 * time.Minute}},
		{name: "loss",
			body: `{"target": {"upstream": "up", "family": "4"}, "fault": {"type": "loss", "percent": 30}}`,
			want: Spec{Target: Target{Upstream: "up", Family: transport.IPv4}, Fault: transport.Fault{Kind: transport.FaultLoss, Percent: 30}, Duration: time.Minute}},
		{name: "truncate on udp",
			body: `{"target": {"upstream": "up", "protocol": "udp"}, "fault": {"type": "truncate"}}`,
			want: Spec{Target: Target{Upstream: "up", Proto: "udp"}, Fault: transport.Fault{Kind: transport.FaultTruncate}, Duration: time.Minute}},

		{name: "not JSON", body: `target=up`, errs: []string{"body"}},
		{name: "empty", body: ``, errs: []string{"body"}},
		{name: "two objects", body: `{"target": {"upstream": "up"}, "fault": {"type": "drop"}} {}`, errs: []string{"body"}},
		{name: "unknown field", body: `{"target": {"upstream": "up", "port": 53}, "fault": {"type": "drop"}}`, errs: []string{"body"}},
		{name: "wrong type", body: `{"target": {"upstream": "up"}, "fault": {"type": "loss", "percent": "30"}}`, errs: []string{"fault.percent"}},
		{name: "nothing", body: `{}`, errs: []string{"target.upstream", "fault.type"}},
		{name: "every target problem",
			body: `{"target": {"upstream": "up", "address": "fe80::1%eth0", "family": "v5", "protocol": "sctp"}, "fault": {"type": "drop"}}`,
			errs: []string{"target.address", "target.family", "target.protocol"}},
		{name: "address of the other family",
			body: `{"target": {"upstream": "up", "address": "192.0.2.1", "family": "v6"}, "fault": {"type": "drop"}}`,
			errs: []string{"target.family"}},
		{name: "unknown fault", body: `{"target": {"upstream": "up"}, "fault": {"type": "melt"}}`, errs: []string{"fault.type"}},
		{name: "delay without delay", body: `{"target": {"upstream": "up"}, "fault": {"type": "delay"}}`, errs: []string{"fault.delay"}},
		{name: "delay not a duration", body: `{"target": {"upstream": "up"}, "fault": {"type": "delay", "delay": "soon"}}`, errs: []string{"fault.delay"}},
		{name: "delay too long", body: `{"target": {"upstream": "up"}, "fault": {"type": "delay", "delay": "2m"}}`, errs: []string{"fault.delay"}},
		{name: "delay on drop", body: `{"target": {"upstream": "up"}, "fault": {"type": "drop", "delay": "1s"}}`, errs: []string{"fault.delay"}},
		{name: "loss without percent", body: `{"target": {"upstream": "up"}, "fault": {"type": "loss"}}`, errs: []string{"fault.percent"}},
		{name: "loss of 0", body: `{"target": {"upstream": "up"}, "fault": {"type": "loss", "percent": 0}}`, errs: []string{"fault.percent"}},
		{name: "loss over 100", body: `{"target": {"upstream": "up"}, "fault": {"type": "loss", "percent": 100.5}}`, errs: []string{"fault.percent"}},
		{name: "percent on servfail", body: `{"target": {"upstream": "up"}, "fault": {"type": "servfail", "percent": 5}}`, errs: []string{"fault.percent"}},
		{name: "truncate on tls", body: `{"target": {"upstream": "up", "protocol": "tls"}, "fault": {"type": "truncate"}}`, errs: []string{"target.protocol"}},
		{name: "duration over the maximum", body: `{"target": {"upstream": "up"}, "fault": {"type": "drop"}, "duration": "10m1s"}`, errs: []string{"duration"}},
		{name: "negative duration", body: `{"target": {"upstream": "up"}, "fault": {"type": "drop"}, "duration": "-1m"}`, errs: []string{"duration"}},
		{name: "duration not a duration", body: `{"target": {"upstream": "up"}, "fault": {"type": "drop"}, "duration": "1 hour"}`, errs: []string{"duration"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest([]byte(tt.body), testConfig)
			var paths []string
			for _, e := range field.Flatten(err) {
				var fe *field.Error
				if !errors.As(e, &fe) {
					t.Fatalf("problem without a field: %v", e)
				}
				paths = append(paths, fe.Path)
			}
			if strings.Join(paths, " ") != strings.Join(tt.errs, " ") {
				t.Fatalf("problems at %v, want %v: %v", paths, tt.errs, err)
			}
			same := got.Target == tt.want.Target && got.Duration == tt.want.Duration && got.Fault.Kind == tt.want.Fault.Kind &&
				got.Fault.Delay == tt.want.Fault.Delay && got.Fault.Percent == tt.want.Fault.Percent
			if err == nil && !same {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want Config
		errs []string
	}{
		{name: "defaults", want: Config{MaxDuration: 10 * time.Minute, DefaultDuration: time.Minute}},
		{name: "short maximum lowers the default", cfg: Config{MaxDuration: 30 * time.Second},
			want: Config{MaxDuration: 30 * time.Second, DefaultDuration: 30 * time.Second}},
		{name: "default over the maximum", cfg: Config{MaxDuration: time.Minute, DefaultDuration: 2 * time.Minute},
			want: Config{MaxDuration: time.Minute, DefaultDuration: 2 * time.Minute}, errs: []string{"default_duration"}},
		{name: "negative", cfg: Config{MaxDuration: -time.Minute, DefaultDuration: -time.Second},
			want: Config{MaxDuration: -time.Minute, DefaultDuration: -time.Second}, errs: []string{"max_duration", "default_duration"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.cfg.WithDefaults()
			if got != tt.want {
				t.Fatalf("with defaults %+v, want %+v", got, tt.want)
			}
			var paths []string
			for _, e := range field.Flatten(got.Validate()) {
				var fe *field.Error
				errors.As(e, &fe)
				paths = append(paths, fe.Path)
			}
			if strings.Join(paths, " ") != strings.Join(tt.errs, " ") {
				t.Fatalf("problems at %v, want %v", paths, tt.errs)
			}
		})
	}
}

func TestTargetMatches(t *testing.T) {
	v4 := transport.PathID{Upstream: "up", Proto: "udp", Addr: netip.MustParseAddrPort("192.0.2.1:53")}
	v6 := transport.PathID{Upstream: "up", Proto: "tcp", Addr: netip.MustParseAddrPort("[2001:db8::1]:53")}
	tests := []struct {
		name   string
		target Target
		v4, v6 bool
	}{
		{"upstream", Target{Upstream: "up"}, true, true},
		{"other upstream", Target{Upstream: "down"}, false, false},
		{"family", Target{Upstream: "up", Family: transport.IPv6}, false, true},
		{"address", Target{Upstream: "up", Addr: netip.MustParseAddr("192.0.2.1")}, true, false},
		{"address and port", Target{Upstream: "up", Addr: netip.MustParseAddr("192.0.2.1"), Port: 853}, false, false},
		{"protocol", Target{Upstream: "up", Proto: "tcp"}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.target.Matches(v4, transport.IPv4); got != tt.v4 {
				t.Errorf("IPv4 path: %v, want %v", got, tt.v4)
			}
			if got := tt.target.Matches(v6, transport.IPv6); got != tt.v6 {
				t.Errorf("IPv6 path: %v, want %v", got, tt.v6)
			}
		})
	}
}

// FuzzParseRequest: any body gives a valid spec or field errors, never a
// panic, and a spec it accepts is within the limits.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"target": {"upstream": "up"}, "fault": {"type": "drop"}}`,
		`{"target": {"upstream": "up", "address": "[::1]:53", "family": "v6", "protocol": "udp"}, "fault": {"type": "delay", "delay": "150ms"}, "duration": "90s"}`,
		`{"target": {"upstream": "up"}, "fault": {"type": "loss", "percent": 30}, "duration": "10m"}`,
		`{"target": {"upstream": "up", "protocol": "udp"}, "fault": {"type": "truncate"}}`,
		`{"target": {"upstream": "up"}, "fault": {"type": "loss", "percent": 1e309}}`,
		`{}`, `[]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := ParseRequest(body, testConfig)
		if err != nil {
			for _, e := range field.Flatten(err) {
				var fe *field.Error
				if !errors.As(e, &fe) || fe.Path == "" {
					t.Fatalf("problem without a field: %v", e)
				}
			}
			return
		}
		switch {
		case s.Target.Upstream == "":
			t.Fatal("accepted without an upstream")
		case s.Duration <= 0 || s.Duration > testConfig.MaxDuration:
			t.Fatalf("accepted duration %v", s.Duration)
		case s.Fault.Kind < transport.FaultDrop || s.Fault.Kind > transport.FaultTruncate:
			t.Fatalf("accepted fault %v", s.Fault.Kind)
		case s.Fault.Kind == transport.FaultLoss && !(s.Fault.Percent > 0 && s.Fault.Percent <= 100):
			t.Fatalf("accepted loss %v", s.Fault.Percent)
		case s.Fault.Kind == transport.FaultDelay && (s.Fault.Delay <= 0 || s.Fault.Delay > MaxDelay):
			t.Fatalf("accepted delay %v", s.Fault.Delay)
		case s.Fault.Kind == transport.FaultTruncate && s.Target.Proto != "" && s.Target.Proto != "udp":
			t.Fatalf("accepted truncate on %s", s.Target.Proto)
		}
	})
}
