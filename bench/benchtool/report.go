package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The reference server every ratio column divides by.
const reference = "dnsdist"

// direct is the name bench/run.sh gives the rows that ask the upstream
// authoritative server itself, with no forwarder in between.
const direct = "named-direct"

// scenario describes one results table: one scenario key, or with
// listeners one key per listener (key is then a format with one %s), rows
// grouped by listener.
type scenario struct {
	key       string // scenario column of results.tsv, or a format of it
	listeners []string
	title     string
	rate      bool // fixed query rate: show latency instead of QPS ratios
	about     string
}

// listeners are the listener kinds in table order; loadTool names the load
// generator run.sh uses for each.
var (
	listeners = []string{"udp", "tcp", "dot", "doh", "doh3", "doq"}
	loadTool  = map[string]string{"udp": "dnsperf", "tcp": "dnsperf", "dot": "dnsperf", "doh": "h2load", "doh3": "quicload", "doq": "quicload"}
)

var scenarios = []scenario{
	{key: "hit-%s-max", listeners: listeners, title: "Cache hit, maximum throughput, by listener",
		about: "The hot set, already cached, asked as fast as the load generator can: over UDP and TCP, DNS over TLS (`dot`), DNS over HTTPS on HTTP/2 (`doh`) and HTTP/3 (`doh3`), and DNS over QUIC (`doq`). " +
			"The load generator has one core too and can be the limit before the server is: the core columns say which side was saturated, and CPU µs/query compares servers either way. " +
			"Ratios divide by dnsdist on the same listener; dnsdist 1.7 and unbound 1.17 have no DoQ or DoH3, so those rows are dnsedge only."},
	{key: "miss-udp-max", title: "Cache miss, UDP, maximum throughput",
		about: "Every query is a name never asked before, so every query is forwarded. " +
			"`named-direct` is dnsperf asking the upstream itself, for reference: named shares core 1 with dnsperf, so it bounds what any forwarder can show here " +
			"(a forwarder can still beat it slightly: it sends named a steadier stream from one socket than dnsperf's clients do)."},
	{key: "hit-%s-5k", listeners: listeners, title: "Cache hit, fixed 5,000 qps: latency, by listener", rate: true,
		about: "The hot set, already cached, at a fixed 5,000 queries per second. " +
			"'p50 over direct' is the server's p50 minus the p50 of asking named directly over UDP at the same rate (cache-miss table); on the encrypted listeners it includes what the load generator itself adds."},
	{key: "miss-%s-5k", listeners: listeners, title: "Cache miss, fixed 5,000 qps: latency, by listener", rate: true,
		about: "Names never asked before at a fixed 5,000 queries per second; each listener has its own file of new names. " +
			"'p50 over direct' is what the forwarder adds to asking named directly over UDP."},
	{key: "hit-udp-100", title: "Cache hit, UDP, fixed 100 qps: a sidecar's rate", rate: true,
		about: "The hot set, already cached, at 100 queries per second from one client, the rate a pod's sidecar mostly sees. " +
			"At this rate the CPU per query is mostly what the server spends waking up for each query (and, for Go, what its runtime does in the background), not the answer itself."},
	{key: "miss-udp-100", title: "Cache miss, UDP, fixed 100 qps", rate: true,
		about: "Names never asked before at 100 queries per second from one client; 'p50 over direct' subtracts named's p50 at 5,000 qps."},
}

// serverOrder is the order of rows in every table; servers not listed here
// come after, in the order they appear in the results. dnsedge-gogc100 is
// dnsedge run with GOGC=100 in the memory tables.
var serverOrder = []string{direct, "dnsedge", "dnsedge-validate", "dnsedge-gogc100", "dnsdist", "unbound", "unbound-validate", "coredns"}

type result struct {
	scenario, server, status string
	qps, sent, completed     string
	lost, cpu, p50, p99      string
	serverPct, loadPct       string
	note                     string
}

func writeReport(dir, out string) error {
	meta, err := readTSV(filepath.Join(dir, "meta.tsv"), 2)
	if err != nil {
		return err
	}
	servers, err := readTSV(filepath.Join(dir, "servers.tsv"), 5)
	if err != nil {
		return err
	}
	rows, err := readTSV(filepath.Join(dir, "results.tsv"), 13)
	if err != nil {
		return err
	}
	m := map[string]string{}
	for _, kv := range meta {
		m[kv[0]] = kv[1]
	}
	var results []result
	for _, r := range rows {
		results = append(results, result{r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12]})
	}

	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Load benchmarks\n\n")
	w("Written by `make bench` (`bench/run.sh`) on %s. Raw dnsperf output and server logs are in `bench/out/` after a run.\n\n", m["date"])
	w("**Read with care.** This is a small shared virtual machine and its numbers are noisy; every number and ratio below comes from one run, not a median of several. Differences of 10–15%% between servers are within the noise; the ratio columns are for orders of magnitude and for spotting regressions between runs on the same machine.\n\n")

	noisy, ran := 0, 0
	for _, r := range results {
		if r.status != "ok" {
			continue
		}
		ran++
		if strings.Contains(r.note, "other processes used") {
			noisy++
		}
	}
	if noisy > 0 {
		w("**Warning:** in %d of %d runs other processes took more than 10%% of core 0 (see the Notes columns), so those rows measure the machine's background load as much as the servers. "+
			"Rerun when the machine is quiet (`uptime`), or with `BENCH_NICE=-10` to favour the benchmark.\n\n", noisy, ran)
	}
	w("## Machine\n\n")
	w("| | |\n|---|---|\n")
	for _, k := range []string{"cpu", "nproc", "memory", "os", "kernel", "go", "load average"} {
		w("| %s | %s |\n", k, m[k])
	}
	w("\n## Servers\n\n")
	hitRSS, err := readOptionalTSV(filepath.Join(dir, "hit-rss.tsv"), 2)
	if err != nil {
		return err
	}
	hitPeak := map[string]string{}
	for _, r := range hitRSS {
		hitPeak[r[0]] = r[1]
	}
	peak := map[string]string{}
	for _, s := range servers {
		if s[2] == "ok" {
			peak[s[0]] = s[3]
		}
	}
	status := func(name string, m map[string]string) string {
		if _, ok := m[name]; ok {
			return "ok"
		}
		return "missing"
	}
	w("| Server | Version | Status | Peak RSS after the hit runs (MiB) | ÷ dnsdist | Peak RSS after all runs (MiB) | ÷ dnsdist | Notes |\n|---|---|---|---:|---:|---:|---:|---|\n")
	for _, s := range sortServers(servers, func(r []string) string { return r[0] }) {
		hp, ok := hitPeak[s[0]]
		if !ok {
			hp = "-"
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s |\n", s[0], s[1], s[2], mib(hp),
			ratio(hp, hitPeak["dnsdist"], status("dnsdist", hitPeak)), mib(s[3]),
			ratio(s[3], peak["dnsdist"], status("dnsdist", peak)), s[4])
	}
	w("\nPeak RSS is `VmHWM` from `/proc/PID/status`: after the UDP and TCP cache-hit runs, which come first and leave the hot set (1,000 names) alone in the cache, and after all of a server's runs, the cache-miss runs included (each server caches up to about 200,000 entries).\n")

	w("\n## Method\n\n")
	for _, line := range methodLines(m) {
		w("- %s\n", line)
	}

	byKey := map[string][]result{}
	for _, r := range results {
		byKey[r.scenario] = append(byKey[r.scenario], r)
	}
	directP50 := lookup(byKey["miss-udp-5k"], direct).p50
	for _, sc := range scenarios {
		groups := []string{""}
		if sc.listeners != nil {
			groups = sc.listeners
		}
		var table []string
		for _, l := range groups {
			key := sc.key
			if l != "" {
				key = fmt.Sprintf(sc.key, l)
			}
			rs := sortServers(byKey[key], func(r result) string { return r.server })
			ref := lookup(rs, reference)
			for _, r := range rs {
				table = append(table, tableRow(sc, l, r, ref, directP50))
			}
		}
		if len(table) == 0 {
			continue
		}
		w("\n## %s\n\n%s\n\n", sc.title, sc.about)
		lead, lsep := "", ""
		if sc.listeners != nil {
			lead, lsep = "Listener | Load generator | ", "---|---|"
		}
		if sc.rate {
			w("| %sServer | Answered qps | Lost | p50 (ms) | p99 (ms) | p50 over direct (ms) | CPU µs/query | CPU ÷ %s | Notes |\n", lead, reference)
		} else {
			w("| %sServer | QPS | Lost | CPU µs/query | QPS ÷ %s | CPU ÷ %s | Server core busy | Load core busy | Notes |\n", lead, reference, reference)
		}
		w("|%s---|---:|---:|---:|---:|---:|---:|---:|---|\n", lsep)
		for _, line := range table {
			w("%s\n", line)
		}
	}
	if err := writePairs(w, dir, m, policyPairs); err != nil {
		return err
	}
	if err := writePairs(w, dir, m, canaryPairs); err != nil {
		return err
	}
	if err := writePairs(w, dir, m, basePairs); err != nil {
		return err
	}
	if err := writePairs(w, dir, m, sidecarPairs); err != nil {
		return err
	}
	if err := writeCarryCost(w, dir); err != nil {
		return err
	}
	if err := writeHistogramCost(w, dir); err != nil {
		return err
	}
	writeDNSSEC(w, byKey)
	if err := writePairs(w, dir, m, dnssecPairs); err != nil {
		return err
	}
	if err := writeFleet(w, dir, m); err != nil {
		return err
	}
	if err := writeUpgrade(w, dir); err != nil {
		return err
	}
	if err := writeIdle(w, dir); err != nil {
		return err
	}
	if err := writeIdleRSS(w, dir); err != nil {
		return err
	}
	if err := writeCacheMem(w, dir, m); err != nil {
		return err
	}
	writeTargets(w, byKey, dir)
	if err := writeSidecar(w, byKey, dir, peak, hitPeak); err != nil {
		return err
	}
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

// tableRow formats one result of scenario sc; listener is empty for tables
// without a listener column.
func tableRow(sc scenario, listener string, r, ref result, directP50 string) string {
	lead := ""
	if sc.listeners != nil {
		lead = listener + " | " + loadTool[listener] + " | "
	}
	if r.status != "ok" {
		return fmt.Sprintf("| %s%s | - | - | - | - | - | - | - | %s |", lead, r.server, r.status)
	}
	cpuRatio := ratio(r.cpu, ref.cpu, ref.status)
	if r.server == direct {
		cpuRatio = "-"
	}
	if sc.rate {
		over := "-"
		if r.server != direct {
			over = diff(r.p50, directP50)
		}
		return fmt.Sprintf("| %s%s | %s | %s%% | %s | %s | %s | %s | %s | %s |",
			lead, r.server, num(r.qps, 0), r.lost, r.p50, r.p99, over, num(r.cpu, 1), cpuRatio, r.note)
	}
	qpsRatio := ratio(r.qps, ref.qps, ref.status)
	if r.server == direct {
		qpsRatio = "-"
	}
	return fmt.Sprintf("| %s%s | %s | %s%% | %s | %s | %s | %s | %s | %s |",
		lead, r.server, num(r.qps, 0), r.lost, num(r.cpu, 1), qpsRatio, cpuRatio, pct(r.serverPct), pct(r.loadPct), r.note)
}

func methodLines(m map[string]string) []string {
	nice := ""
	if n := m["nice"]; n != "" && n != "0" {
		nice = " Servers, named and dnsperf ran at nice " + n + "."
	}
	lines := []string{
		"Pinning: the server under test runs alone on core 0 (`taskset -c 0`); dnsperf and the upstream, BIND `named` as an authoritative server, share core 1. " +
			"Cache-hit runs never reach named, so dnsperf has core 1 to itself there; in cache-miss runs named and dnsperf compete for core 1, which caps the miss numbers (see `named-direct`)." + nice,
		"Servers run one at a time, each started fresh, each forwarding to the same named over UDP with its cache on: " +
			"dnsedge (`sequential` group, cache 200,000 entries), dnsdist (`newServer` + packet cache of 200,000 entries), " +
			"unbound (`forward-zone \".\"`, one thread, validator off), CoreDNS (`forward . named` + `cache` of 200,000 entries).",
		fmt.Sprintf("Zone: `bench.test.` with %s A records `h0..h%s` plus a wildcard `*.bench.test.` so any unique name resolves; TTL 3600.", m["zone_records"], m["zone_last"]),
		fmt.Sprintf("Cache hit: the hot set `h0..h%s` (%s names) is asked once to warm the cache, then looped.", m["hot_last"], m["hot_names"]),
		"Cache miss: every query is a name never asked before in that server's life (`l<N>`/`m<N>.bench.test`, one pass through the file, `-n 1`).",
		fmt.Sprintf("Maximum-throughput runs: `dnsperf %s -l %s` (TCP adds `-m tcp`). Fixed-rate runs: `dnsperf %s -l %s -v`; at 100 qps `dnsperf %s -l %s -v`.", m["max_args"], m["seconds"], m["rate_args"], m["seconds"], orDash(m["low_args"]), orDash(m["low_seconds"])),
		"Percentiles: dnsperf " + m["dnsperf"] + " has no latency histogram, so the fixed-rate runs use `-v`, which prints every query's latency; p50/p99 are nearest-rank over all answered queries, with timed-out queries counted as infinitely slow.",
		"CPU µs/query: the server's utime+stime from `/proc/PID/stat` (all threads) before and after the run, converted with `getconf CLK_TCK`, divided by dnsperf's 'Queries completed'. At " + m["clk_tck"] + " ticks a second the reading is exact to one tick (" + m["tick_us"] + " µs of CPU) per run, which is small over a whole run's queries.",
		"Core busy columns (maximum-throughput tables): the server's own CPU time as a share of its core's wall time, and how busy core 1 (dnsperf, plus named in miss runs) was, from `/proc/stat`. " +
			"A server well under 100% next to a load core at 100% means dnsperf, not the server, was the limit. A note flags runs where other processes took more than 10% of core 0.",
		"Ratio columns divide by dnsdist's number in the same table from the same run. For QPS higher is better; for CPU lower is better.",
	}
	if m["encrypted"] != "1" {
		return lines
	}
	return append(lines,
		"Encrypted listeners (dnsedge, dnsdist and unbound; CoreDNS has none configured): all three use the same certificate, a P-256 leaf for 127.0.0.1 signed by a CA made with openssl for the run. "+
			"unbound serves DoT on its `tls-port` and DoH on its `https-port` (`http-endpoint: /dns-query`, HTTP/2 through libnghttp2), each with its own `interface:` line, in the same single-threaded process as its UDP and TCP rows; "+
			"it serves at most `incoming-num-tcp` (64) connections per port, so it has no idle-connection line. "+
			"DoT: dnsperf with the same arguments plus `-m dot`. "+
			"DoH over HTTP/2: "+m["h2load"]+" with GET `/dns-query?dns=` URIs made from the same query files (`benchtool dohuris`), `h2load "+m["h2_max_args"]+" -D "+m["seconds"]+"` at maximum rate, `h2load "+m["h2_rate_args"]+"` at 5,000 qps and `h2load "+m["h2_miss_rate_args"]+"` for misses (h2load's clients each walk the URI list from its start, so one client keeps every name new); "+
			"dnsperf's own DoH mode loses queries and stalls, so it is not used. p50/p99 come from h2load's `--log-file`, with non-2xx answers counted as timed out; h2load cannot see DNS response codes, so `kdig +tls` and `kdig +https` (GET, against the bench CA) check an answer from each server's DoT and DoH listeners before the runs.",
		"DoQ (RFC 9250) and DoH over HTTP/3: `bench/quicload` (quic-go), dnsedge only. `quicload "+m["ql_max_args"]+"` at maximum rate and `quicload "+m["ql_rate_args"]+"` at 5,000 qps; every answer is unpacked and checked against its question, latency is measured per query, lost queries count as infinitely slow.",
		"Each encrypted run keeps its connections for the whole run, so the TLS/QUIC handshake cost is spread over all its queries; CPU µs/query is the server's CPU over the queries the load generator saw answered, as for UDP and TCP. The hot set is asked once more over UDP before the encrypted runs, since the maximum-rate cache-miss run pushes it out of the cache.",
	)
}

func readTSV(path string, cols int) ([][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		r := strings.Split(sc.Text(), "\t")
		if len(r) != cols {
			return nil, fmt.Errorf("%s:%d: want %d tab-separated fields, got %d", path, line, cols, len(r))
		}
		rows = append(rows, r)
	}
	return rows, sc.Err()
}

// readOptionalTSV is readTSV for a file a run may not have written (an
// older run, a phase skipped): no file, no rows.
func readOptionalTSV(path string, cols int) ([][]string, error) {
	rows, err := readTSV(path, cols)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return rows, err
}

func sortServers[T any](rows []T, name func(T) string) []T {
	rank := func(s string) int {
		for i, n := range serverOrder {
			if n == s {
				return i
			}
		}
		return len(serverOrder)
	}
	out := make([]T, 0, len(rows))
	for r := 0; r <= len(serverOrder); r++ {
		for _, row := range rows {
			if rank(name(row)) == r {
				out = append(out, row)
			}
		}
	}
	return out
}

func lookup(rs []result, server string) result {
	for _, r := range rs {
		if r.server == server {
			return r
		}
	}
	return result{status: "missing"}
}

func num(s string, prec int) string {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return s
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func ratio(a, b, refStatus string) string {
	x, errA := strconv.ParseFloat(a, 64)
	y, errB := strconv.ParseFloat(b, 64)
	if refStatus != "ok" || errA != nil || errB != nil || y == 0 {
		return "-"
	}
	return strconv.FormatFloat(x/y, 'f', 2, 64)
}

func diff(a, b string) string {
	x, errA := strconv.ParseFloat(a, 64)
	y, errB := strconv.ParseFloat(b, 64)
	if errA != nil || errB != nil {
		return "-"
	}
	return fmt.Sprintf("%+.3f", x-y)
}

func pct(s string) string {
	if s == "-" || s == "" {
		return "-"
	}
	return s + "%"
}

func mib(kib string) string {
	v, err := strconv.ParseFloat(kib, 64)
	if err != nil {
		return "-"
	}
	return strconv.FormatFloat(v/1024, 'f', 1, 64)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
