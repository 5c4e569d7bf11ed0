package main

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/miekg/dns"
)

func TestSummaryString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		s    summary
		want string
	}{
		{name: "nothing", s: summary{}, want: "sent=0 answered=0 lost=0 errors=0 noerror=0 seconds=0.000 qps=0 p50_ms=- p99_ms=-"},
		{name: "answered", s: summary{sent: 2, answered: 2, noerror: 2, seconds: 1, lat: []float64{0.002, 0.001}},
			want: "sent=2 answered=2 lost=0 errors=0 noerror=2 seconds=1.000 qps=2 p50_ms=1.000 p99_ms=2.000"},
		{name: "lost is slowest", s: summary{sent: 2, answered: 1, lost: 1, errors: 1, seconds: 2, lat: []float64{math.Inf(1), 0.001}},
			want: "sent=2 answered=1 lost=1 errors=1 noerror=0 seconds=2.000 qps=0 p50_ms=1.000 p99_ms=timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.s.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadQueries(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "q.txt")
	if err := os.WriteFile(path, []byte("h1.bench.test A\n# comment\n\nh2.bench.test aaaa\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	qs, err := readQueries(path)
	if err != nil {
		t.Fatalf("readQueries: %v", err)
	}
	if len(qs) != 2 {
		t.Fatalf("got %d queries, want 2", len(qs))
	}
	var m dns.Msg
	if err := m.Unpack(qs[1]); err != nil {
		t.Fatal(err)
	}
	if m.Id != 0 || m.Question[0].Name != "h2.bench.test." || m.Question[0].Qtype != dns.TypeAAAA {
		t.Errorf("got %v", m.String())
	}
	var s summary
	if err := check(qs[0], qs[1], &s); err == nil {
		t.Error("check accepted an answer to another question")
	}
}
