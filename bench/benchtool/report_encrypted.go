package main

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
)

// idleTarget is the most memory an idle DoT connection may cost dnsedge.
const idleTarget = 30.0 // KiB

// writeIdle adds the idle-connection memory table from idle.tsv (server,
// connections asked, established, VmRSS before and after in KiB, KiB per
// connection, note), when bench/run.sh wrote one.
func writeIdle(w func(string, ...any), dir string) error {
	rows, err := readTSV(filepath.Join(dir, "idle.tsv"), 7)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(rows) == 0) {
		return nil
	}
	if err != nil {
		return err
	}
	w("\n## Memory per idle DoT connection\n\n")
	w("Each server, freshly started and warmed, gets %s DoT connections (TLS handshake, one query each, then held idle; 50 per source address on 127.1.x.1, since dnsedge allows 64 connections per client address). "+
		"The growth of the server's `VmRSS` between before opening them and 3 s after the last one is up, divided by the connections established. Target for dnsedge: under %.0f KiB.\n\n", rows[0][1], idleTarget)
	w("| Server | Established | VmRSS before (MiB) | VmRSS after (MiB) | KiB per connection | Notes |\n|---|---:|---:|---:|---:|---|\n")
	for _, r := range sortServers(rows, func(r []string) string { return r[0] }) {
		w("| %s | %s of %s | %s | %s | %s | %s |\n", r[0], r[2], r[1], mib(r[3]), mib(r[4]), r[5], r[6])
	}
	return nil
}

// writeTargets adds dnsedge's standing against dnsdist on the encrypted
// listeners both serve: CPU per query no more than dnsdist's and p99 no
// higher, and the idle-connection memory target.
func writeTargets(w func(string, ...any), byKey map[string][]result, dir string) {
	if len(byKey["hit-dot-max"]) == 0 && len(byKey["hit-doh-max"]) == 0 {
		return
	}
	w("\n## Encrypted transports: dnsedge against dnsdist\n\n")
	w("Target: on DoT and DoH, dnsedge's CPU per query no more than dnsdist's (ratio ≤ 1.00) and its p99 no higher, from the tables above.\n\n")
	w("| Listener | CPU ÷ dnsdist, hit max | CPU ÷ dnsdist, hit 5k | CPU ÷ dnsdist, miss 5k | p99 hit 5k, dnsedge / dnsdist (ms) | p99 miss 5k, dnsedge / dnsdist (ms) | Target |\n")
	w("|---|---:|---:|---:|---:|---:|---|\n")
	for _, l := range []string{"dot", "doh"} {
		met := true
		var cells []string
		for _, k := range []string{"hit-%s-max", "hit-%s-5k", "miss-%s-5k"} {
			rs := byKey[fmt.Sprintf(k, l)]
			e, d := lookup(rs, "dnsedge"), lookup(rs, reference)
			r := "-"
			if e.status == "ok" {
				r = ratio(e.cpu, d.cpu, d.status)
			}
			if v, err := strconv.ParseFloat(r, 64); err != nil || v > 1 {
				met = false
			}
			cells = append(cells, r)
		}
		for _, k := range []string{"hit-%s-5k", "miss-%s-5k"} {
			rs := byKey[fmt.Sprintf(k, l)]
			e, d := lookup(rs, "dnsedge"), lookup(rs, reference)
			ep, dp := "-", "-"
			if e.status == "ok" {
				ep = e.p99
			}
			if d.status == "ok" {
				dp = d.p99
			}
			x, errX := strconv.ParseFloat(ep, 64)
			y, errY := strconv.ParseFloat(dp, 64)
			if errX != nil || (errY == nil && x > y) {
				met = false
			}
			cells = append(cells, ep+" / "+dp)
		}
		verdict := "met"
		if !met {
			verdict = "not met"
		}
		w("| %s | %s | %s | %s | %s | %s | %s |\n", l, cells[0], cells[1], cells[2], cells[3], cells[4], verdict)
	}
	rows, err := readTSV(filepath.Join(dir, "idle.tsv"), 7)
	if err != nil {
		return
	}
	for _, r := range rows {
		what := map[string]string{"dnsedge": "dnsedge", "dnsedge-gogc100": "dnsedge with GOGC=100"}[r[0]]
		if what == "" {
			continue
		}
		verdict := "not met"
		if v, err := strconv.ParseFloat(r[5], 64); err == nil && v < idleTarget {
			verdict = "met"
		}
		w("\nIdle DoT connection: %s %s KiB per connection against a target of under %.0f KiB: %s.\n", what, r[5], idleTarget, verdict)
	}
}
