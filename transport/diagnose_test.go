package transport

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/transport/transporttest"
	"github.com/miekg/dns"
)

// diagnoseZone is authoritative for test.example. only, so the default
// large probe, ". DNSKEY", is REFUSED, as by any authoritative-only server.
const diagnoseZone = `$ORIGIN test.example.
@    60 IN SOA ns hostmaster 1 3600 600 86400 30
www  60 IN A 192.0.2.10
`

// diagnoseWant is what one path's report must say.
type diagnoseWant struct {
	problem string // substring of Problem; empty: the path is not broken
	large   string // "arrived", "untested" or "lost"
	warning string // substring of Warning; empty: no warning
}

// needsLarge is the warning of a path whose large-answer test did not run.
const needsLarge = "large-answer test not run"

// TestDiagnoseLargeAnswer probes one fault server over UDP and TCP on both
// loopback families and checks what each path's report says about large
// answers: that an error or a small answer to the large probe is reported
// as an untested path asking for -large, never as an answer that arrived
// or as an MTU problem, and that real large answers, MTU black holes and
// dead paths read as before.
func TestDiagnoseLargeAnswer(t *testing.T) {
	t.Parallel()
	// mid.test.example. TXT is about 1175 bytes on the wire, compressed,
	// and about 1335 uncompressed.
	bigZone := diagnoseZone + transporttest.BigTXT("big.test.example.", 20) + transporttest.BigTXT("mid.test.example.", 10)
	all := func(w diagnoseWant) map[string]diagnoseWant {
		return map[string]diagnoseWant{"udp/ipv4": w, "tcp/ipv4": w, "udp/ipv6": w, "tcp/ipv6": w}
	}
	tests := []struct {
		name   string
		zone   string
		faults transporttest.Faults
		cfg    ProbeConfig
		want   map[string]diagnoseWant // by proto/family
	}{
		{
			name: "default probe refused by authoritative-only server",
			zone: diagnoseZone,
			want: all(diagnoseWant{large: "untested", warning: ". DNSKEY answered REFUSED; use -large NAME/TYPE"}),
		},
		{
			name:   "default probe refused behind an MTU black hole",
			zone:   diagnoseZone,
			faults: transporttest.Faults{DropIPv6Large: true},
			want:   all(diagnoseWant{large: "untested", warning: needsLarge}),
		},
		{
			name: "large TXT arrives",
			zone: bigZone,
			cfg:  ProbeConfig{LargeName: "big.test.example", LargeType: dns.TypeTXT},
			want: all(diagnoseWant{large: "arrived"}),
		},
		{
			name: "small answer",
			zone: diagnoseZone,
			cfg:  ProbeConfig{LargeName: "www.test.example", LargeType: dns.TypeA},
			want: all(diagnoseWant{large: "untested", warning: "www.test.example. A answer is only"}),
		},
		{
			name: "answer under 1232 bytes as sent compressed",
			zone: bigZone,
			cfg:  ProbeConfig{LargeName: "mid.test.example", LargeType: dns.TypeTXT},
			want: all(diagnoseWant{large: "untested", warning: "mid.test.example. TXT answer is only"}),
		},
		{
			name: "no data",
			zone: diagnoseZone,
			cfg:  ProbeConfig{LargeName: "test.example", LargeType: dns.TypeDNSKEY},
			want: all(diagnoseWant{large: "untested", warning: "test.example. DNSKEY answer is only"}),
		},
		{
			name: "no such name",
			zone: diagnoseZone,
			cfg:  ProbeConfig{LargeName: "missing.test.example", LargeType: dns.TypeTXT},
			want: all(diagnoseWant{large: "untested", warning: "answered NXDOMAIN"}),
		},
		{
			name:   "server failure",
			zone:   bigZone,
			faults: transporttest.Faults{Rcode: dns.RcodeServerFailure},
			cfg:    ProbeConfig{LargeName: "big.test.example", LargeType: dns.TypeTXT},
			want:   all(diagnoseWant{large: "untested", warning: "answered SERVFAIL"}),
		},
		{
			name:   "large TXT lost in an IPv6 MTU black hole",
			zone:   bigZone,
			faults: transporttest.Faults{DropIPv6Large: true},
			cfg:    ProbeConfig{LargeName: "big.test.example", LargeType: dns.TypeTXT},
			want: map[string]diagnoseWant{
				"udp/ipv4": {large: "arrived"},
				"tcp/ipv4": {large: "arrived"},
				"udp/ipv6": {large: "lost", problem: "large UDP answer lost (path MTU black hole?)"},
				"tcp/ipv6": {large: "arrived"},
			},
		},
		{
			name:   "IPv6 dropped",
			zone:   bigZone,
			faults: transporttest.Faults{DropIPv6: true},
			cfg:    ProbeConfig{LargeName: "big.test.example", LargeType: dns.TypeTXT},
			want: map[string]diagnoseWant{
				"udp/ipv4": {large: "arrived"},
				"tcp/ipv4": {large: "arrived"},
				"udp/ipv6": {large: "lost", problem: "unreachable", warning: "3 of 3 probes lost"},
				"tcp/ipv6": {large: "lost", problem: "unreachable", warning: "3 of 3 probes lost"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := transporttest.StartFault(t, tt.zone)
			up.Set(tt.faults)
			cfg := tt.cfg
			cfg.Probes, cfg.Timeout = 3, 300*time.Millisecond
			var targets []Target
			for _, ap := range []netip.AddrPort{up.AddrV4(), up.AddrV6()} {
				targets = append(targets, Target{Name: ap.String(), Endpoint: Endpoint{Scheme: "udp", Addr: ap.Addr(), Port: ap.Port()}})
			}
			reports := Diagnose(context.Background(), targets, nil, cfg)
			if len(reports) != len(tt.want) {
				t.Fatalf("%d reports, want %d: %+v", len(reports), len(tt.want), reports)
			}
			for _, r := range reports {
				key := r.Proto + "/" + r.Family.String()
				w, ok := tt.want[key]
				if !ok {
					t.Errorf("unexpected path %s: %+v", key, r)
					continue
				}
				checkDiagnoseReport(t, key, r, w)
			}
		})
	}
}

func checkDiagnoseReport(t *testing.T, key string, r PathReport, w diagnoseWant) {
	t.Helper()
	switch {
	case w.problem == "" && r.Broken():
		t.Errorf("%s: broken: %q (err %q), want not broken", key, r.Problem, r.Err)
	case w.problem != "" && !strings.Contains(r.Problem, w.problem):
		t.Errorf("%s: problem %q, want %q", key, r.Problem, w.problem)
	}
	switch {
	case w.warning == "" && r.Warning != "":
		t.Errorf("%s: warning %q, want none", key, r.Warning)
	case !strings.Contains(r.Warning, w.warning):
		t.Errorf("%s: warning %q, want it to contain %q", key, r.Warning, w.warning)
	}
	switch w.large {
	case "arrived":
		if r.LargeSize <= EDNSBufferSize || r.LargeTC || r.LargeUntested != "" {
			t.Errorf("%s: large size %d, tc %v, untested %q; want an answer over %d bytes", key, r.LargeSize, r.LargeTC, r.LargeUntested, EDNSBufferSize)
		}
	case "untested":
		if r.LargeSize != 0 || r.LargeTC || r.LargeUntested == "" {
			t.Errorf("%s: large size %d, tc %v, untested %q; want untested", key, r.LargeSize, r.LargeTC, r.LargeUntested)
		}
		if !strings.Contains(r.Warning, needsLarge) || !strings.Contains(r.Warning, "-large NAME/TYPE") {
			t.Errorf("%s: warning %q, want it to say the test did not run and -large is needed", key, r.Warning)
		}
	case "lost":
		if r.LargeSize != 0 || r.LargeTC || r.LargeUntested != "" {
			t.Errorf("%s: large size %d, tc %v, untested %q; want lost", key, r.LargeSize, r.LargeTC, r.LargeUntested)
		}
	default:
		t.Fatalf("%s: bad want.large %q", key, w.large)
	}
}
