package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// writeCacheMem adds the cache memory table from cachemem.tsv, when
// bench/run.sh wrote one. Its fields: server, status, names asked, NOERROR
// answers, entries cached, where that count comes from ("server" or
// "noerror"), fill seconds, QPS, VmRSS and VmHWM before the fill, VmRSS and
// VmHWM after it (KiB), bytes per entry, note.
func writeCacheMem(w func(string, ...any), dir string, m map[string]string) error {
	rows, err := readTSV(filepath.Join(dir, "cachemem.tsv"), 14)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(rows) == 0) {
		return nil
	}
	if err != nil {
		return err
	}
	w("\n## Cache memory: RSS per cached entry\n\n")
	w("After all the runs above, each server is started once more, alone on core 0 with dnsperf and named on core 1 as before, with a cache sized for %s entries: "+
		"dnsedge `cache.max_entries: %s`, with `cache.max_bytes: %s` where the build accepts it (`dnsedge check`; see Notes); "+
		"dnsdist `newPacketCache(%s, {numberOfShards=20})`; unbound `%s` (unbound bounds bytes, not entries); CoreDNS `cache { success %s }`. "+
		"It is warmed with the hot set and 2 s later its `VmRSS` and `VmHWM` are read from `/proc/PID/status`. "+
		"dnsperf then asks each of %s unique names (`u0..u%s.bench.test`, answered by the wildcard) once, `dnsperf %s -n 1 -l %s`: at most %s qps, which named sustains next to dnsperf on core 1, so each forwarder's own rate is the limit, and the time bound stops the slower ones short of the whole file. "+
		"3 s after the fill the memory is read again.\n\n",
		commas(m["cache_entries"]), m["cache_entries"], m["cache_max_bytes"],
		m["cache_entries"], m["unbound_cache"], m["cache_entries"],
		commas(m["cache_names"]), m["cache_last"], m["cache_args"], m["cache_seconds"], commas(qpsCap(m["cache_args"])))
	w("Entries cached is the server's own count after the fill minus before it: `dnsedge_cache_entries` (its metrics endpoint), `dnsdist_pool_cache_entries` (dnsdist's webserver), " +
		"`msg.cache.count` (`unbound-control`, with extended statistics; each message entry has an RRset entry beside it), `coredns_cache_entries{type=\"success\"}` (the prometheus plugin). " +
		"Those endpoints are on in this phase only, and their own memory is in the before figures. The NOERROR answers are an upper bound on it: an answer is not cached when a full shard evicts or refuses it or its hash collides. " +
		"Bytes per entry is (VmRSS after − VmRSS before) ÷ entries cached. " +
		"RSS of a Go server includes the garbage collector's headroom: unless the environment sets GOGC, `dnsedge serve` lets its heap grow past what is live by all of it up to 64 MiB, then by 64 MiB until half of it is more, then by half of it (at least 16 MiB, at most 256 MiB) before a collection; " +
		"`dnsedge-gogc100` is the same binary and configuration with GOGC=100, Go's default (which CoreDNS runs with, and which turns dnsedge's own target off), where the heap may reach about twice what is live.")
	if s := m["cache_phase_seconds"]; s != "" && s != "-" {
		w(" The phase took %s s.", s)
	}
	w("\n\n")
	w("| Server | Names asked | NOERROR answers | Entries cached | Fill (s) | QPS | VmRSS before (MiB) | VmHWM before (MiB) | VmRSS after (MiB) | VmHWM after (MiB) | Bytes per entry | Notes |\n")
	w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range sortServers(rows, func(r []string) string { return r[0] }) {
		if r[1] != "ok" {
			w("| %s | - | - | - | - | - | - | - | - | - | - | %s |\n", r[0], r[1])
			continue
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r[0], r[2], r[3], r[4], num(r[6], 1), num(r[7], 0), mib(r[8]), mib(r[9]), mib(r[10]), mib(r[11]), r[12], r[13])
	}
	return nil
}

// qpsCap returns the value of -Q in dnsperf arguments, or "-".
func qpsCap(args string) string {
	var prev string
	for _, a := range strings.Fields(args) {
		if prev == "-Q" {
			return a
		}
		prev = a
	}
	return "-"
}

// commas writes an integer with thousands separators (1,000,000); anything
// else is returned as it is.
func commas(s string) string {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return s
	}
	d := strconv.Itoa(n)
	var out []byte
	for i := range d {
		if i > 0 && (len(d)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, d[i])
	}
	return string(out)
}

// writeIdleRSS adds the idle memory table from idle-rss.tsv (server, VmRSS
// in KiB two seconds after it answered its first query, and two seconds
// after the warm-up cached the hot set).
func writeIdleRSS(w func(string, ...any), dir string) error {
	path := filepath.Join(dir, "idle-rss.tsv")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	rows, err := readTSV(path, 3)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return nil
	}
	w("\n## Idle memory\n\n")
	w("`VmRSS` of each server with no load: two seconds after it first answered, and two seconds after the warm-up asked the 1,000 names of the hot set once. What a sidecar holds while its pod is quiet.\n\n")
	w("| Server | RSS after start (MiB) | RSS with the hot set cached (MiB) |\n|---|---:|---:|\n")
	for _, r := range sortServers(rows, func(r []string) string { return r[0] }) {
		w("| %s | %s | %s |\n", r[0], mib(r[1]), mib(r[2]))
	}
	return nil
}
