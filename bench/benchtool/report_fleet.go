package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
)

// Targets of the fleet rows.
const (
	consulCPUTarget = 1.10 // highest median ratio of CPU per query, Consul over static zone
	l2HitTarget     = 0.3  // ms an L2 hit may add to an L1 hit's p50
	redisHungTarget = 2.0  // ms a hung Redis may add to a miss's p99: the default budget
	redisDeadTarget = 0.1  // ms a dead Redis may add to a miss's p99 once the breaker is open
	l2HitShareMin   = 0.9  // share of the L2 hit server's local misses Redis must answer for its row to count
)

// l2HitShare is the share of the L2 hit server's local misses that Redis
// answered during the L2 rounds, if known.
func l2HitShare(dir string) (float64, bool) {
	_, share, ok := l2Counters(dir, "l2-udp-5k", "l2", "")
	return share, ok
}

// fleetSide is one side of one fleet round: queries answered, the
// server's CPU in nanoseconds, and its p50 and p99 in ms (NaN at maximum
// rate, +Inf when a percentile falls on a timed-out query).
type fleetSide struct{ queries, cpuNS, p50, p99 float64 }

func (s fleetSide) cpuPerQuery() float64 { return s.cpuNS / 1e3 / s.queries }

// fleetRounds holds a fleet file's rounds: per scenario, the complete
// rounds in file order, each a side name to its figures, and the first
// failure of a scenario.
type fleetRounds struct {
	rounds map[string][]map[string]fleetSide
	failed map[string]string
}

// readFleet reads fleet.tsv: scenario, round, side, status, queries
// completed, CPU ns, p50 ms, p99 ms. A round is complete when every side
// in sides[scenario] ran.
func readFleet(path string, sides map[string][]string) (fleetRounds, error) {
	rows, err := readTSV(path, 8)
	if err != nil {
		return fleetRounds{}, err
	}
	type key struct{ sc, round string }
	byRound := map[key]map[string]fleetSide{}
	var order []key
	out := fleetRounds{rounds: map[string][]map[string]fleetSide{}, failed: map[string]string{}}
	fail := func(sc, why string) {
		if _, ok := out.failed[sc]; !ok {
			out.failed[sc] = why
		}
	}
	for i, r := range rows {
		sc, round, side, status := r[0], r[1], r[2], r[3]
		if _, ok := sides[sc]; !ok {
			return fleetRounds{}, fmt.Errorf("%s:%d: unknown scenario %q", path, i+1, sc)
		}
		if status != "ok" {
			fail(sc, side+": "+status)
			continue
		}
		q, err1 := strconv.ParseFloat(r[4], 64)
		ns, err2 := strconv.ParseFloat(r[5], 64)
		if err1 != nil || err2 != nil || q <= 0 {
			fail(sc, side+": no queries answered")
			continue
		}
		k := key{sc, round}
		if byRound[k] == nil {
			byRound[k] = map[string]fleetSide{}
			order = append(order, k)
		}
		byRound[k][side] = fleetSide{queries: q, cpuNS: ns, p50: latencyMS(r[6]), p99: latencyMS(r[7])}
	}
	for _, k := range order {
		complete := true
		for _, s := range sides[k.sc] {
			if _, ok := byRound[k][s]; !ok {
				complete = false
			}
		}
		if complete {
			out.rounds[k.sc] = append(out.rounds[k.sc], byRound[k])
		}
	}
	return out, nil
}

// latencyMS parses a percentile as benchtool latency prints it: ms,
// "timeout" (+Inf) or "-" (NaN).
func latencyMS(s string) float64 {
	if s == "timeout" {
		return math.Inf(1)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// fleetScenarios are the sides of each fleet scenario, the reference first.
var fleetScenarios = map[string][]string{
	"consul-udp-max":    {"static", "consul"},
	"consul-udp-5k":     {"static", "consul"},
	"l2-udp-5k":         {"l1", "l2", "miss"},
	"redis-hung-udp-5k": {"off", "hung"},
	"redis-dead-udp-5k": {"off", "dead"},
}

// collect returns fn of each round's side, leaving out NaN.
func collect(rs []map[string]fleetSide, fn func(map[string]fleetSide) float64) []float64 {
	var v []float64
	for _, r := range rs {
		if x := fn(r); !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	return v
}

// medianOr formats the median of v with format f, or "-" for no values.
func medianOr(f string, v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	m := median(v)
	if math.IsInf(m, 1) {
		return "timeout"
	}
	return fmt.Sprintf(f, m)
}

// spread formats the middle half of v, or "-".
func spread(f string, v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf(f+"–"+f, quantile(v, 0.25), quantile(v, 0.75))
}

// metAtMost says whether the median of v is at most target, and why not
// when there is nothing to judge.
func metAtMost(v []float64, target float64) string {
	switch {
	case len(v) == 0:
		return "no complete round"
	case median(v) <= target:
		return "yes"
	}
	return "no"
}

// writeFleet writes the fleet section if fleet.tsv exists: a
// Consul-backed answer against a static-zone one, an L2 hit against an L1
// hit and an upstream miss, and misses with Redis hung or dead against
// misses without Redis, each from rounds in which every side ran back to
// back, so that the differences and ratios are taken per round.
func writeFleet(w func(string, ...any), dir string, m map[string]string) error {
	path := filepath.Join(dir, "fleet.tsv")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	fr, err := readFleet(path, fleetScenarios)
	if err != nil {
		return err
	}
	secs, _ := strconv.ParseFloat(m["pair_seconds"], 64)
	w("\n## Fleet\n\nThe servers of each comparison run side by side on core 0, the Consul agent and `redis-server` on core 1 "+
		"beside named and dnsperf. Each scenario runs %s rounds of %s s on every side, one right after the other, the order "+
		"rotated from round to round; ratios and differences are taken per round and the tables give their median "+
		"(and middle half). CPU is the server's time on a CPU (schedstat) over the queries answered; p50 and p99 come from "+
		"`dnsperf -v` at 5,000 qps.\n", orDash(m["pair_rounds"]), orDash(m["pair_seconds"]))
	failNote := func(sc string) string {
		if f, ok := fr.failed[sc]; ok {
			return " (a round failed: " + f + ")"
		}
		return ""
	}

	w("\n### Consul-backed answers\n\n`web.service.consul.` A from a `consul agent -dev` (three instances of `web`, each with a passing check) "+
		"against the same name from a static zone of the same three A records at TTL 0. Target: a Consul-backed answer "+
		"costs at most %.2f × the CPU of a static-zone answer (median ratio per round).\n\n", consulCPUTarget)
	w("| Scenario | rounds | static zone, CPU µs/query | Consul | CPU ratio: median | middle half | static zone, QPS | Consul, QPS | QPS ratio: median | target met |\n")
	w("|---|---:|---:|---:|---:|---|---:|---:|---:|---|\n")
	for _, sc := range []string{"consul-udp-max", "consul-udp-5k"} {
		rs := fr.rounds[sc]
		if len(rs) == 0 {
			if f, ok := fr.failed[sc]; ok {
				w("| %s | 0 | - | - | - | - | - | - | - | %s |\n", sc, f)
			}
			continue
		}
		ratio := collect(rs, func(r map[string]fleetSide) float64 { return r["consul"].cpuPerQuery() / r["static"].cpuPerQuery() })
		qRatio := collect(rs, func(r map[string]fleetSide) float64 { return r["consul"].queries / r["static"].queries })
		qps := func(side string) string {
			if secs <= 0 {
				return "-"
			}
			return medianOr("%.0f", collect(rs, func(r map[string]fleetSide) float64 { return r[side].queries / secs }))
		}
		w("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s%s |\n", sc, len(rs),
			medianOr("%.2f", collect(rs, func(r map[string]fleetSide) float64 { return r["static"].cpuPerQuery() })),
			medianOr("%.2f", collect(rs, func(r map[string]fleetSide) float64 { return r["consul"].cpuPerQuery() })),
			medianOr("%.3f", ratio), spread("%.3f", ratio), qps("static"), qps("consul"), medianOr("%.3f", qRatio),
			metAtMost(ratio, consulCPUTarget), failNote(sc))
	}

	w("\n### Shared cache in Redis\n\nTwo dnsedge servers share one `redis-server`: the L1 hit is the first asked the 1,000 hot names it "+
		"has cached (and written to Redis); the L2 hit is the second, with `cache.max_entries: 1`, so that its own cache misses "+
		"nearly every query and the answer comes from Redis (it is warmed twice, so that Redis holds every hot name); both have a fixed budget of 2 ms (`min_budget: 2ms`), and the second's breaker does not open (`failures: 1000000`), so that a stall of Redis on the shared load core does not send the rest of its rounds to the upstream. The upstream miss is a third, without `l2`, asked names never asked "+
		"before (named's wildcard). Target: an L2 hit adds at most %.1f ms to an L1 hit's p50 (median of the per-round difference).\n\n", l2HitTarget)
	w("| Case | rounds | CPU µs/query | p50 (ms) | p99 (ms) | p50 over L1 hit (ms): median | middle half | target met |\n")
	w("|---|---:|---:|---:|---:|---:|---|---|\n")
	if rs := fr.rounds["l2-udp-5k"]; len(rs) > 0 {
		for _, c := range []struct{ side, name string }{{"l1", "L1 hit"}, {"l2", "L2 hit"}, {"miss", "upstream miss, no l2"}} {
			over, met := []float64(nil), "-"
			if c.side != "l1" {
				over = collect(rs, func(r map[string]fleetSide) float64 { return r[c.side].p50 - r["l1"].p50 })
			}
			if c.side == "l2" {
				met = metAtMost(over, l2HitTarget)
				if share, ok := l2HitShare(dir); ok && share < l2HitShareMin {
					met = fmt.Sprintf("not measured: Redis answered %.1f%% of the local misses", 100*share)
				}
				met += failNote("l2-udp-5k")
			}
			diff := "-"
			if c.side != "l1" {
				diff = medianOr("%.3f", over)
			}
			w("| %s | %d | %s | %s | %s | %s | %s | %s |\n", c.name, len(rs),
				medianOr("%.2f", collect(rs, func(r map[string]fleetSide) float64 { return r[c.side].cpuPerQuery() })),
				medianOr("%.3f", collect(rs, func(r map[string]fleetSide) float64 { return r[c.side].p50 })),
				medianOr("%.3f", collect(rs, func(r map[string]fleetSide) float64 { return r[c.side].p99 })),
				diff, spread("%.3f", over), met)
		}
	} else if f, ok := fr.failed["l2-udp-5k"]; ok {
		w("| L2 hit | 0 | - | - | - | - | - | %s |\n", f)
	}
	writeL2Counters(w, dir, "l2-udp-5k", "l2", "the L2 hit server")
	w("\nThe L2 hit row is judged only when Redis answered at least %.0f%% of that server's local misses during the rounds.\n",
		100*l2HitShareMin)

	w("\n### Misses with Redis hung or dead\n\nMisses (names never asked before) at 5,000 qps on the server that shares Redis, "+
		"against the server without `l2`: with Redis stopped (`SIGSTOP`: lookups wait the budget until the breaker opens), then "+
		"killed (`SIGKILL`) once the breaker is open. Targets: a hung Redis adds at most the budget (%.0f ms) to p99, a dead one "+
		"at most %.1f ms (median of the per-round difference).\n\n", redisHungTarget, redisDeadTarget)
	w("| Case | rounds | without Redis: CPU µs/query | p50 (ms) | p99 (ms) | with Redis hung or dead: CPU µs/query | p50 (ms) | p99 (ms) | p99 added (ms): median | middle half | target | target met |\n")
	w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|\n")
	for _, c := range []struct {
		sc, side, name string
		target         float64
	}{
		{"redis-hung-udp-5k", "hung", "Redis hung (SIGSTOP)", redisHungTarget},
		{"redis-dead-udp-5k", "dead", "Redis dead (SIGKILL), breaker open", redisDeadTarget},
	} {
		rs := fr.rounds[c.sc]
		if len(rs) == 0 {
			if f, ok := fr.failed[c.sc]; ok {
				w("| %s | 0 | - | - | - | - | - | - | - | - | ≤ %.1f ms | %s |\n", c.name, c.target, f)
			}
			continue
		}
		added := collect(rs, func(r map[string]fleetSide) float64 { return r[c.side].p99 - r["off"].p99 })
		col := func(side string, fn func(fleetSide) float64, f string) string {
			return medianOr(f, collect(rs, func(r map[string]fleetSide) float64 { return fn(r[side]) }))
		}
		cpu := func(s fleetSide) float64 { return s.cpuPerQuery() }
		p50 := func(s fleetSide) float64 { return s.p50 }
		p99 := func(s fleetSide) float64 { return s.p99 }
		w("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | ≤ %.1f ms | %s%s |\n", c.name, len(rs),
			col("off", cpu, "%.2f"), col("off", p50, "%.3f"), col("off", p99, "%.3f"),
			col(c.side, cpu, "%.2f"), col(c.side, p50, "%.3f"), col(c.side, p99, "%.3f"),
			medianOr("%.3f", added), spread("%.3f", added), c.target, metAtMost(added, c.target), failNote(c.sc))
	}
	writeL2Counters(w, dir, "redis-hung-udp-5k", "l1", "Redis hung, the server sharing it")
	writeL2Counters(w, dir, "redis-dead-udp-5k", "l1", "Redis dead, the server sharing it")
	return nil
}

// writeL2Counters writes one line of what a server's l2 counters did
// during a scenario's rounds (l2Counters), if known.
func writeL2Counters(w func(string, ...any), dir, sc, side, who string) {
	if line, _, _ := l2Counters(dir, sc, side, who); line != "" {
		w("%s", line)
	}
}

// l2Counters describes what a server's l2 counters did during a
// scenario's rounds, from fleet-l2.tsv (scenario, side, before or after,
// counter, value): the growth of each counter, the breaker's state before
// and after, and the share of the server's local misses that Redis
// answered, which it also returns (ok false when unknown).
func l2Counters(dir, sc, side, who string) (text string, share float64, ok bool) {
	rows, err := readTSV(filepath.Join(dir, "fleet-l2.tsv"), 5)
	if err != nil {
		return "", 0, false
	}
	vals := map[string]map[string]float64{"before": {}, "after": {}}
	var names []string
	for _, r := range rows {
		if r[0] != sc || r[1] != side || vals[r[2]] == nil {
			continue
		}
		v, err := strconv.ParseFloat(r[4], 64)
		if err != nil {
			continue
		}
		if _, seen := vals["before"][r[3]]; !seen {
			if _, seen := vals["after"][r[3]]; !seen {
				names = append(names, r[3])
			}
		}
		vals[r[2]][r[3]] = v
	}
	delta := func(c string) (float64, bool) {
		a, ok1 := vals["after"][c]
		b, ok2 := vals["before"][c]
		return a - b, ok1 && ok2
	}
	var line string
	for _, c := range names {
		var part string
		if c == "breaker_state" {
			b, ok1 := vals["before"][c]
			a, ok2 := vals["after"][c]
			if !ok1 || !ok2 {
				continue
			}
			part = fmt.Sprintf("`breaker_state` %.0f before, %.0f after", b, a)
		} else if d, ok := delta(c); ok {
			part = fmt.Sprintf("`%s` +%.0f", c, d)
		} else {
			continue
		}
		if line != "" {
			line += ", "
		}
		line += part
	}
	if line == "" {
		return "", 0, false
	}
	text = fmt.Sprintf("\nDuring the rounds, %s (`dnsedge_l2_*`): %s.", who, line)
	hits, ok1 := delta("hits_total")
	misses, ok2 := delta("misses_total")
	skipped, ok3 := delta("skipped_total")
	if ok1 && ok2 && ok3 && hits+misses+skipped > 0 {
		share, ok = hits/(hits+misses+skipped), true
	}
	if ok && hits > 0 {
		text += fmt.Sprintf(" Redis answered %.1f%% of its local misses (%.0f of %.0f; the others were asked of the upstream).",
			100*share, hits, hits+misses+skipped)
	}
	return text + "\n", share, ok
}
