package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// latencySummary is what one dnsperf -v run says about per-query latency.
type latencySummary struct {
	Answered    int     // queries with a response
	TimedOut    int     // queries reported as "T": counted as infinitely slow
	Interrupted int     // queries still in flight when the run stopped: left out
	P50, P99    float64 // seconds; +Inf when the rank falls on a timed-out query
}

// String formats the summary as the one line bench/run.sh reads:
// "p50_ms p99_ms answered timed_out interrupted", with "timeout" standing for
// a percentile that falls on a timed-out query and "-" for no data.
func (s latencySummary) String() string {
	return fmt.Sprintf("%s %s %d %d %d", ms(s.P50, s), ms(s.P99, s), s.Answered, s.TimedOut, s.Interrupted)
}

func ms(v float64, s latencySummary) string {
	switch {
	case s.Answered+s.TimedOut == 0:
		return "-"
	case math.IsInf(v, 1):
		return "timeout"
	default:
		return strconv.FormatFloat(v*1000, 'f', 3, 64)
	}
}

// readLatencies reads dnsperf 2.x verbose output. Each query is one line:
//
//	> NOERROR h1.bench.test A 0.000199   (answered, latency in seconds)
//	> T h1.bench.test A                  (timed out)
//	> I h1.bench.test A                  (interrupted at the end of the run)
//
// Every other line is ignored. Percentiles use the nearest-rank method over
// answered and timed-out queries together, so losses show up in p99 instead
// of silently improving it.
func readLatencies(r io.Reader) (latencySummary, error) {
	var (
		s   latencySummary
		lat []float64
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "> ") {
			continue
		}
		f := strings.Fields(line[2:])
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "T":
			s.TimedOut++
			lat = append(lat, math.Inf(1))
			continue
		case "I":
			s.Interrupted++
			continue
		}
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil || len(f) < 2 {
			return s, fmt.Errorf("unexpected verbose line %q", line)
		}
		s.Answered++
		lat = append(lat, v)
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	slices.Sort(lat)
	s.P50 = nearestRank(lat, 50)
	s.P99 = nearestRank(lat, 99)
	return s, nil
}

// nearestRank returns the p-th percentile of sorted by the nearest-rank
// method, or NaN for no data.
func nearestRank(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(rank, 1)
	return sorted[rank-1]
}
