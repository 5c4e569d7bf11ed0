//go:build unix

package edge

import (
	"bytes"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/cache"
)

// stateBenchConfig has room for a million typical answers.
const stateBenchConfig = stateTestConfig + `cache: {max_entries: 1100000, max_bytes: 1073741824}
`

// benchRecords returns n records of a typical answer (a CNAME and an A
// record, with EDNS), each for its own name.
func benchRecords(b *testing.B, n int) []cache.Record {
	recs := make([]cache.Record, n)
	for i := range recs {
		name := fmt.Sprintf("n%07d.example.org.", i)
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		m := new(dns.Msg)
		m.SetReply(q)
		m.Id = 0
		m.Compress = true
		m.Answer = []dns.RR{
			&dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 3600}, Target: "web.example.org."},
			&dns.A{Hdr: dns.RR_Header{Name: "web.example.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: []byte{192, 0, 2, 1}},
		}
		m.SetEdns0(1232, false)
		msg, err := m.Pack()
		if err != nil {
			b.Fatal(err)
		}
		var wire [255]byte
		l, _ := dns.PackDomainName(name, wire[:], 0, nil, false)
		key := append(bytes.ToLower(wire[:l]), 0, 1, 0, 1, 0)
		recs[i] = cache.Record{Key: key, Msg: msg, Age: time.Second, TTL: 300, Stale: 86400, FailedAgo: -1}
	}
	return recs
}

// BenchmarkState1M writes the state of a server holding a million cache
// entries and reads it into another: the size of the state
// (bytes/state) and the time each side takes (write-ms, read-ms), wall
// and CPU (garbage collection included).
func BenchmarkState1M(b *testing.B) {
	const n = 1 << 20
	cfg, err := Parse("bench.yaml", []byte(stateBenchConfig))
	if err != nil {
		b.Fatal(err)
	}
	src, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	if got := src.gen.Load().cache.Restore(benchRecords(b, n), 0); got != n {
		b.Fatalf("filled %d entries, want %d", got, n)
	}
	var buf bytes.Buffer
	buf.Grow(160 << 20) // a pipe to the new process does not grow
	var write, read, writeCPU, readCPU time.Duration
	for b.Loop() {
		buf.Reset()
		c0 := cpuTime()
		t0 := time.Now()
		if err := src.WriteState(&buf, StateOptions{MaxEntries: n}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		c1 := cpuTime()
		dst, err := New(cfg, Options{})
		if err != nil {
			b.Fatal(err)
		}
		c2 := cpuTime()
		t2 := time.Now()
		if err := dst.ReadState(bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		c3 := cpuTime()
		if got := dst.gen.Load().cache.Len(); got != n {
			b.Fatalf("read %d entries, want %d", got, n)
		}
		dst.Close()
		write += t1.Sub(t0)
		read += t3.Sub(t2)
		writeCPU += c1 - c0
		readCPU += c3 - c2
	}
	b.ReportMetric(float64(buf.Len()), "bytes/state")
	b.ReportMetric(float64(write.Milliseconds())/float64(b.N), "write-ms")
	b.ReportMetric(float64(read.Milliseconds())/float64(b.N), "read-ms")
	b.ReportMetric(float64(writeCPU.Milliseconds())/float64(b.N), "write-cpu-ms")
	b.ReportMetric(float64(readCPU.Milliseconds())/float64(b.N), "read-cpu-ms")
}

// cpuTime returns the CPU time (user and system) the process has used:
// on a shared machine the wall time of a step says more of the neighbours
// than of the step.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
