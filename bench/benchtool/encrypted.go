package main

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// writeDoHURIs reads a dnsperf query file ("NAME TYPE" a line) and writes
// one DoH GET URI a line for h2load -i: base followed by the query, ID 0
// and RD set, in unpadded base64url (RFC 8484 §4.1).
func writeDoHURIs(r io.Reader, w io.Writer, base string) error {
	sc := bufio.NewScanner(r)
	bw := bufio.NewWriter(w)
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		qtype := dns.TypeA
		if len(f) > 1 {
			t, ok := dns.StringToType[strings.ToUpper(f[1])]
			if !ok {
				return fmt.Errorf("line %d: unknown type %q", line, f[1])
			}
			qtype = t
		}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(f[0]), qtype)
		m.Id = 0
		b, err := m.Pack()
		if err != nil {
			return fmt.Errorf("line %d: pack %s: %w", line, f[0], err)
		}
		fmt.Fprintf(bw, "%s?dns=%s\n", base, base64.RawURLEncoding.EncodeToString(b))
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return bw.Flush()
}

// readH2loadLog reads h2load --log-file output: one request a line, tab
// separated: start time (µs since the epoch), HTTP status, µs until the
// response ended. A status other than 2xx counts as a timed-out query
// (infinitely slow), as readLatencies does for dnsperf's "T" lines.
func readH2loadLog(r io.Reader) (latencySummary, error) {
	var (
		s   latencySummary
		lat []float64
	)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Split(strings.TrimSpace(sc.Text()), "\t")
		if len(f) < 3 {
			continue
		}
		status, err1 := strconv.Atoi(f[1])
		us, err2 := strconv.ParseFloat(f[2], 64)
		if err1 != nil || err2 != nil {
			return s, fmt.Errorf("unexpected h2load log line %q", sc.Text())
		}
		if status < 200 || status > 299 {
			s.TimedOut++
			lat = append(lat, math.Inf(1))
			continue
		}
		s.Answered++
		lat = append(lat, us/1e6)
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	slices.Sort(lat)
	s.P50 = nearestRank(lat, 50)
	s.P99 = nearestRank(lat, 99)
	return s, nil
}
