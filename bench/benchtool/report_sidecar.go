package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
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
// ratio and whether it is met ("-" when either side is missing). A CPU
// row with paired rounds (sidecar-pairs.tsv) also has their median ratio
// and middle half in paired, and single, whether the single measurements
// alone meet it; met is then the paired verdict.
type sidecarRow struct{ what, edge, ref, ratio, paired, met, single string }

// writeSidecar adds one table of every sidecar-cost target, from the
// tables above: results, the servers' peak RSS (servers.tsv, hit-rss.tsv)
// and the cache memory phase (cachemem.tsv).
func writeSidecar(w func(string, ...any), byKey map[string][]result, dir string, peak, hitPeak map[string]string) error {
	pairs, pairFailed, err := readSidecarPairs(dir)
	if err != nil {
		return err
	}
	var rows []sidecarRow
	for _, sc := range sidecarScenarios {
		e, d := lookup(byKey[sc], "dnsedge"), lookup(byKey[sc], reference)
		rs := pairs[sc]
		if e.status == "missing" && d.status == "missing" && len(rs) == 0 {
			continue
		}
		var r sidecarRow
		if d.status == "ok" && e.status != "ok" {
			// dnsedge failed a run dnsdist made: no figure, no target.
			r = sidecarRow{what: "CPU µs/query, " + sc, edge: e.status, ref: d.cpu, ratio: "-", met: "not met"}
		} else {
			r = compare("CPU µs/query, "+sc, e.cpu, d.cpu, e.status == "ok" && d.status == "ok", 1)
		}
		r.single = r.met
		if f, ok := pairFailed[sc]; ok && len(rs) == 0 {
			r.paired = "failed (" + f + ")"
		}
		if len(rs) > 0 {
			ratios := make([]float64, len(rs))
			for i, x := range rs {
				ratios[i] = x.b / x.a
			}
			med := median(ratios)
			r.paired = fmt.Sprintf("%.3f (%.3f–%.3f, %d rounds)", med, quantile(ratios, 0.25), quantile(ratios, 0.75), len(rs))
			r.met = verdict(med <= 1)
		}
		rows = append(rows, r)
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

	met, metSingle, judged, paired := 0, 0, 0, 0
	for _, r := range rows {
		if r.met != "-" || r.single != "" && r.single != "-" {
			judged++
		}
		if r.met == "met" {
			met++
		}
		single := r.met
		if r.single != "" {
			single = r.single
		}
		if single == "met" {
			metSingle++
		}
		if r.paired != "" {
			paired++
		}
	}
	if judged == 0 {
		return nil // a run of the phases alone
	}
	w("\n## Sidecar cost: dnsedge against dnsdist\n\n")
	w("Every target at once, from the tables above: dnsedge's server CPU per query at most dnsdist's in each scenario both ran (ratio ≤ 1.00), "+
		"p99 of UDP misses at 5,000 qps at most dnsdist's, peak RSS at most %.1f× dnsdist's, and at most %.0f bytes of RSS per cached entry at 1 M entries. ",
		sidecarRSSRatio, sidecarEntryBytes)
	if paired == 0 {
		w("Met: %d of %d.\n\n", met, judged)
		w("| Target | dnsedge | dnsdist | ratio | met |\n|---|---:|---:|---:|---|\n")
		for _, r := range rows {
			w("| %s | %s | %s | %s | %s |\n", r.what, r.edge, r.ref, r.ratio, r.met)
		}
		return nil
	}
	w("A CPU row with paired rounds (the section “Sidecar rows in paired rounds” above) is judged by their median ratio, dnsedge's CPU per query over dnsdist's "+
		"with both servers side by side in the same seconds; the single measurements of the tables above stay beside it, "+
		"since on this machine one server's fixed-rate figure moves by a quarter between runs. "+
		"Met: %d of %d (%d of %d by the single measurements alone).\n\n", met, judged, metSingle, judged)
	w("| Target | dnsedge | dnsdist | ratio | paired: median ratio (middle half) | met |\n|---|---:|---:|---:|---|---|\n")
	for _, r := range rows {
		p := r.paired
		if p == "" {
			p = "-"
		}
		w("| %s | %s | %s | %s | %s | %s |\n", r.what, r.edge, r.ref, r.ratio, p, r.met)
	}
	return nil
}

// readSidecarPairs reads sidecar-pairs.tsv (bench/sidecar.sh): per
// scenario, the complete rounds with dnsdist as side a and dnsedge as
// side b, and the first failure of a scenario with one. No file, no
// rounds.
func readSidecarPairs(dir string) (map[string][]pairRound, map[string]string, error) {
	path := filepath.Join(dir, sidecarPairs.file)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	return readPairs(path, sidecarPairs.a, sidecarPairs.b)
}

// compare is a target row where dnsedge's figure a must be at most limit
// times dnsdist's b; ok says both were measured.
func compare(what, a, b string, ok bool, limit float64) sidecarRow {
	r := sidecarRow{what: what, edge: orDash(a), ref: orDash(b), ratio: "-", met: "-"}
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
