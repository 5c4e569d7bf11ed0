package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// pairTable describes one comparison measured in paired rounds (pair_rounds
// in run.sh): two servers side by side, a and b (two dnsedge servers, or
// dnsdist and dnsedge), each scenario run in short rounds on both, one
// right after the other.
type pairTable struct {
	file, title, about string
	a, b               string // side names in the file
	aName, bName       string // column headings
	scenarios          []string
	target             float64 // highest acceptable median ratio b/a
}

var (
	policyPairs = pairTable{
		file:  "policy.tsv",
		title: "Policy cost",
		about: "dnsedge with a policy of 1,000 rules over every match dimension, with routes and all three kinds of split " +
			"(`benchtool policy 1000`), against the same dnsedge without it. Every benchmark query matches the policy's last rule, " +
			"a sticky 50% split between two groups over the same upstream, so each pays for a full decision and a split.",
		a: "off", b: "on", aName: "without policy", bName: "with 1,000 rules",
		scenarios: []string{"hit-udp-max", "hit-tcp-max", "miss-udp-max", "hit-udp-5k", "miss-udp-5k"},
		target:    1.05,
	}
	canaryPairs = pairTable{
		file:  "canary.tsv",
		title: "Canary cost",
		about: "dnsedge running a canary of its own configuration (decision diff on 5% of the queries, answer diff and control on 1%) " +
			"against the same dnsedge without one. The candidate is unchanged, so the samples cost what they cost, not what they find.",
		a: "off", b: "on", aName: "without canary", bName: "canary at 5%",
		scenarios: []string{"hit-udp-max", "hit-udp-5k", "miss-udp-5k"},
		target:    1.05,
	}
	basePairs = pairTable{
		file:  "base.tsv",
		title: "Against an earlier dnsedge",
		about: "dnsedge built from the tree against dnsedge built from an earlier commit (`BENCH_BASE`, bench/base.sh), " +
			"both on the configuration of the main rows (no policy): what the changes since that commit cost per query.",
		a: "base", b: "head", aName: "earlier commit", bName: "this tree",
		scenarios: []string{"hit-udp-max", "hit-tcp-max", "miss-udp-max", "hit-udp-5k", "miss-udp-5k"},
		target:    1.02,
	}
	sidecarPairs = pairTable{
		file:  "sidecar-pairs.tsv",
		title: "Sidecar rows in paired rounds: dnsedge against dnsdist",
		about: "dnsedge and dnsdist side by side on the main rows' configurations (bench/sidecar.sh), each round measuring both: " +
			"the sidecar scenarios that a single measurement per server cannot decide on this machine. The ratio is dnsedge's CPU per query over dnsdist's.",
		a: "dnsdist", b: "dnsedge", aName: "dnsdist", bName: "dnsedge",
		scenarios: []string{"hit-udp-max", "miss-udp-max", "hit-tcp-max", "hit-udp-5k", "miss-udp-5k", "hit-udp-100", "miss-udp-100"},
		target:    1.00,
	}
	dnssecPairs = pairTable{
		file:  "dnssec-pairs.tsv",
		title: "Validated cache hits",
		about: "dnsedge validating `signed.test.` (its DS as the only trust anchor) against the same dnsedge without the `dnssec` section, " +
			"both asked the 1,000 signed names after a warm-up, so every query is a cache hit: validated on one side, never on the other.",
		a: "plain", b: "validate", aName: "without validation", bName: "validating",
		scenarios: []string{"dnssec-hit-udp-max", "dnssec-hit-udp-5k"},
		target:    1.05,
	}
)

// pairRound is one round of one scenario: CPU µs per query on each side.
type pairRound struct{ a, b float64 }

// readPairs reads a pair file: scenario, round, side, status, queries
// completed, CPU ns. It returns each scenario's complete rounds in file
// order and, for a scenario with a failed side, the first failure.
func readPairs(path, a, b string) (map[string][]pairRound, map[string]string, error) {
	rows, err := readTSV(path, 6)
	if err != nil {
		return nil, nil, err
	}
	type key struct{ sc, round string }
	half := map[key]*pairRound{}
	seen := map[key][2]bool{}
	var order []key
	failed := map[string]string{}
	for _, r := range rows {
		sc, round, side, status := r[0], r[1], r[2], r[3]
		if status != "ok" {
			if _, ok := failed[sc]; !ok {
				failed[sc] = side + ": " + status
			}
			continue
		}
		q, err1 := strconv.ParseFloat(r[4], 64)
		ns, err2 := strconv.ParseFloat(r[5], 64)
		if err1 != nil || err2 != nil || q <= 0 {
			if _, ok := failed[sc]; !ok {
				failed[sc] = side + ": no queries answered"
			}
			continue
		}
		k := key{sc, round}
		if half[k] == nil {
			half[k] = &pairRound{}
			order = append(order, k)
		}
		s := seen[k]
		switch side {
		case a:
			half[k].a, s[0] = ns/1e3/q, true
		case b:
			half[k].b, s[1] = ns/1e3/q, true
		default:
			return nil, nil, fmt.Errorf("%s: unknown side %q (want %s or %s)", path, side, a, b)
		}
		seen[k] = s
	}
	out := map[string][]pairRound{}
	for _, k := range order {
		if s := seen[k]; s[0] && s[1] {
			out[k.sc] = append(out[k.sc], *half[k])
		}
	}
	return out, failed, nil
}

// writePairs writes the section of pair table t if its file exists: per
// scenario, the median CPU per query of each side, and the ratio b/a taken
// per round (both sides of a round ran back to back), as its median and
// its middle half (25th to 75th percentile). The median ratio is held
// against the target.
func writePairs(w func(string, ...any), dir string, m map[string]string, t pairTable) error {
	path := filepath.Join(dir, t.file)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	rounds, failed, err := readPairs(path, t.a, t.b)
	if err != nil {
		return err
	}
	w("\n## %s\n\n%s\n\n", t.title, t.about)
	if t.file == basePairs.file {
		if ref, err := os.ReadFile(filepath.Join(dir, "base-ref.txt")); err == nil {
			w("The earlier commit: %s.\n\n", strings.TrimSpace(string(ref)))
		}
	}
	w("The two servers run side by side on core 0. Each scenario runs %s rounds of %s s on each, one right after the other, "+
		"in alternating order, but for the fixed-rate scenarios (5k, 100 qps), which run on both at the same time%s; the ratio is taken per round, so that both figures of a ratio see the same machine, "+
		"and the table gives the median of those ratios and their middle half. CPU is the servers' time on a CPU "+
		"(schedstat, in nanoseconds), over the queries answered. Target: a median ratio of at most %.2f.\n\n",
		orDash(m["pair_rounds"]), orDash(m["pair_seconds"]), togetherNote(m["pair_together"]), t.target)
	w("| Scenario | rounds | %s, CPU µs/query (median) | %s | ratio per round: median | middle half | target met |\n|---|---:|---:|---:|---:|---|---|\n", t.aName, t.bName)
	for _, sc := range t.scenarios {
		rs := rounds[sc]
		if len(rs) == 0 {
			if f, ok := failed[sc]; ok {
				w("| %s | 0 | - | - | - | - | %s |\n", sc, f)
			}
			continue
		}
		var as, bs, ratios []float64
		for _, r := range rs {
			as, bs, ratios = append(as, r.a), append(bs, r.b), append(ratios, r.b/r.a)
		}
		med := median(ratios)
		met := "yes"
		if med > t.target {
			met = "no"
		}
		if f, ok := failed[sc]; ok {
			met += " (a round failed: " + f + ")"
		}
		w("| %s | %d | %.2f | %.2f | %.3f | %.3f–%.3f | %s |\n", sc, len(rs), median(as), median(bs), med,
			quantile(ratios, 0.25), quantile(ratios, 0.75), met)
	}
	if t.file == "policy.tsv" {
		if rss, err := readTSV(filepath.Join(dir, "policy-rss.tsv"), 2); err == nil && len(rss) == 2 {
			w("\nPeak RSS after the rounds: %s MiB without the policy, %s MiB with it.\n", mib(rss[0][1]), mib(rss[1][1]))
		}
	}
	return nil
}

// quantile returns the q-quantile of v by linear interpolation between
// the closest ranks.
func quantile(v []float64, q float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	if lo+1 >= len(s) {
		return s[len(s)-1]
	}
	return s[lo] + (pos-float64(lo))*(s[lo+1]-s[lo])
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// togetherNote says when the fixed-rate rounds were not run together
// (BENCH_PAIR_TOGETHER=0).
func togetherNote(v string) string {
	if v == "0" {
		return " (not in this run: BENCH_PAIR_TOGETHER=0)"
	}
	return ""
}
