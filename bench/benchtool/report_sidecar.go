package main

import (
	"fmt"
	"path/filepath"
	"strconv"
)

// The sidecar-cost targets: dnsedge's server CPU per query at most
// dnsdist's on every scenario both ran, p99 of UDP misses at 5,000 qps at
// most dnsdist's, peak RSS at most sidecarRSSRatio times dnsdist's, and at
// most sidecarEntryBytes of RSS per cached entry at 1 M entries.
const (
	sidecarRSSRatio   = 1.5
	sidecarEntryBytes = 400.0
)

// sidecarScenarios are the rows of the CPU targets, in table order.
var sidecarScenarios = []string{
	"hit-udp-max", "miss-udp-max", "hit-tcp-max", "hit-dot-max", "hit-doh-max",
	"hit-udp-5k", "miss-udp-5k", "hit-dot-5k", "miss-dot-5k", "hit-doh-5k", "miss-doh-5k",
	"hit-udp-100", "miss-udp-100",
}

// sidecarRow is one target: what, dnsedge's figure, dnsdist's, their
// ratio and whether it is met ("-" when either side is missing).
type sidecarRow struct{ what, edge, ref, ratio, met string }

// writeSidecar adds one table of every sidecar-cost target, from the
// tables above: results, the servers' peak RSS (servers.tsv, hit-rss.tsv)
// and the cache memory phase (cachemem.tsv).
func writeSidecar(w func(string, ...any), byKey map[string][]result, dir string, peak, hitPeak map[string]string) {
	var rows []sidecarRow
	for _, sc := range sidecarScenarios {
		e, d := lookup(byKey[sc], "dnsedge"), lookup(byKey[sc], reference)
		if e.status == "missing" && d.status == "missing" {
			continue
		}
		if d.status == "ok" && e.status != "ok" {
			// dnsedge failed a run dnsdist made: no figure, no target.
			rows = append(rows, sidecarRow{what: "CPU µs/query, " + sc, edge: e.status, ref: d.cpu, ratio: "-", met: "not met"})
			continue
		}
		rows = append(rows, compare("CPU µs/query, "+sc, e.cpu, d.cpu, e.status == "ok" && d.status == "ok", 1))
	}
	e, d := lookup(byKey["miss-udp-5k"], "dnsedge"), lookup(byKey["miss-udp-5k"], reference)
	if e.status != "missing" || d.status != "missing" {
		rows = append(rows, compare("p99 ms, miss-udp-5k", e.p99, d.p99, e.status == "ok" && d.status == "ok", 1))
	}
	_, he := hitPeak["dnsedge"]
	_, hd := hitPeak[reference]
	rows = append(rows, compare("peak RSS MiB after the hit runs", mib(hitPeak["dnsedge"]), mib(hitPeak[reference]), he && hd, sidecarRSSRatio))
	_, pe := peak["dnsedge"]
	_, pd := peak[reference]
	rows = append(rows, compare("peak RSS MiB after all runs", mib(peak["dnsedge"]), mib(peak[reference]), pe && pd, sidecarRSSRatio))
	per := "-"
	if cm, err := readTSV(filepath.Join(dir, "cachemem.tsv"), 14); err == nil {
		for _, r := range cm {
			if r[0] == "dnsedge" && r[1] == "ok" {
				per = r[12]
			}
		}
	}
	entry := sidecarRow{what: "RSS bytes per cached entry at 1 M", edge: per, ref: fmt.Sprintf("≤ %.0f", sidecarEntryBytes), ratio: "-", met: "-"}
	if v, err := strconv.ParseFloat(per, 64); err == nil {
		entry.met = verdict(v <= sidecarEntryBytes)
	}
	rows = append(rows, entry)

	met, judged := 0, 0
	for _, r := range rows {
		if r.met != "-" {
			judged++
		}
		if r.met == "met" {
			met++
		}
	}
	if judged == 0 {
		return // a run of the phases alone
	}
	w("\n## Sidecar cost: dnsedge against dnsdist\n\n")
	w("Every target at once, from the tables above: dnsedge's server CPU per query at most dnsdist's in each scenario both ran (ratio ≤ 1.00), "+
		"p99 of UDP misses at 5,000 qps at most dnsdist's, peak RSS at most %.1f× dnsdist's, and at most %.0f bytes of RSS per cached entry at 1 M entries. "+
		"Met: %d of %d.\n\n", sidecarRSSRatio, sidecarEntryBytes, met, judged)
	w("| Target | dnsedge | dnsdist | ratio | met |\n|---|---:|---:|---:|---|\n")
	for _, r := range rows {
		w("| %s | %s | %s | %s | %s |\n", r.what, r.edge, r.ref, r.ratio, r.met)
	}
}

// compare is a target row where dnsedge's figure a must be at most limit
// times dnsdist's b; ok says both were measured.
func compare(what, a, b string, ok bool, limit float64) sidecarRow {
	r := sidecarRow{what: what, edge: a, ref: b, ratio: "-", met: "-"}
	if !ok {
		return r
	}
	x, errA := strconv.ParseFloat(a, 64)
	y, errB := strconv.ParseFloat(b, 64)
	if errA != nil || errB != nil || y == 0 {
		return r
	}
	r.ratio = strconv.FormatFloat(x/y, 'f', 2, 64)
	r.met = verdict(x <= limit*y)
	return r
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}
