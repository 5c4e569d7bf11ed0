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

// The micro-benchmark phases (carry.txt, histograms.txt) run a Go
// benchmark binary once per round, every case of it adjacent in time, and
// write "round N" before each run's output. A cost is read per round (the
// difference or ratio of two cases of the same run), so that both sides of
// it saw the same machine, and reported as the median over rounds with
// the middle half.

// microCase is one case of one round: its time per operation (the
// benchmark's cpu-ns/op when it reports one, else ns/op) and allocations.
type microCase struct{ ns, allocs float64 }

// readRounds reads go test -bench output of benchmark bench, one map of
// case name to result per round. Without "round" lines, a case seen again
// starts a new round. A missing file gives no rounds and no error.
func readRounds(path, bench string) ([]map[string]microCase, []string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var (
		rounds []map[string]microCase
		order  []string
		seen   = map[string]bool{}
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 2 && fields[0] == "round" {
			rounds = append(rounds, map[string]microCase{})
			continue
		}
		if len(fields) < 4 || !strings.HasPrefix(fields[0], bench+"/") {
			continue
		}
		name := strings.TrimPrefix(fields[0], bench+"/")
		if i := strings.LastIndex(name, "-"); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i] // a -GOMAXPROCS suffix
			}
		}
		units := map[string]float64{}
		for i := 2; i+1 < len(fields); i += 2 {
			if v, err := strconv.ParseFloat(fields[i], 64); err == nil {
				units[fields[i+1]] = v
			}
		}
		c := microCase{ns: units["ns/op"], allocs: units["allocs/op"]}
		if v, ok := units["cpu-ns/op"]; ok {
			c.ns = v
		}
		if c.ns == 0 {
			continue
		}
		if !seen[name] {
			seen[name] = true
			order = append(order, name)
		}
		if len(rounds) == 0 || hasCase(rounds[len(rounds)-1], name) {
			rounds = append(rounds, map[string]microCase{})
		}
		rounds[len(rounds)-1][name] = c
	}
	return rounds, order, sc.Err()
}

func hasCase(r map[string]microCase, name string) bool { _, ok := r[name]; return ok }

// perRound gives f(round's a, round's b) for every round that has both,
// and the median of each case's own figures over them.
func perRound(rounds []map[string]microCase, a, b string, f func(x, y float64) float64) (vals, as, bs, allocs []float64) {
	for _, r := range rounds {
		x, ok1 := r[a]
		y, ok2 := r[b]
		if ok1 && ok2 {
			vals = append(vals, f(x.ns, y.ns))
			as, bs = append(as, x.ns), append(bs, y.ns)
			allocs = append(allocs, y.allocs)
		}
	}
	return vals, as, bs, allocs
}

// writeCarryCost reports, from carry.txt (BenchmarkForwardCarry, one run
// per round), what the ECS, tag and trace options add to a forwarded
// query: per round, each case's ns/op minus the plain case's. Target: ECS
// and tags add at most 0.5 µs (the median).
func writeCarryCost(w func(string, ...any), dir string) error {
	rounds, order, err := readRounds(filepath.Join(dir, "carry.txt"), "BenchmarkForwardCarry")
	if err != nil || rounds == nil {
		return err
	}
	w("\n## Forward option cost\n\n")
	if !slices.ContainsFunc(rounds, func(r map[string]microCase) bool { return hasCase(r, "plain") }) {
		w("BenchmarkForwardCarry gave no result (see bench/out/run/carry.txt).\n")
		return nil
	}
	w("What the options a forwarded query carries upstream add to dnsedge's forward path (upstream query built and packed, group raced, answer returned, "+
		"against an exchanger that packs the query as the real ones do and answers at once): `BenchmarkForwardCarry` in `edge/middleware`, "+
		"run %d times on core 0, every case of a run right after the others; the cost is each run's difference from its own plain case. "+
		"Target: ECS and tags add at most 0.5 µs per forwarded query (median over the runs).\n\n", len(rounds))
	instr, err := readInstructions(filepath.Join(dir, "carry-instr.tsv"))
	if err != nil {
		return err
	}
	w("| Case | runs | ns/op (median) | allocs/op | added over plain: median | middle half | instructions/op (cachegrind) | added | target met |\n")
	w("|---|---:|---:|---:|---:|---|---:|---:|---|\n")
	for _, name := range order {
		d, _, own, allocs := perRound(rounds, "plain", name, func(x, y float64) float64 { return y - x })
		if len(d) == 0 {
			continue
		}
		met := "-"
		if name == "ecs+tags" {
			met = yesNo(median(d) <= 500)
		}
		counts := "- | -"
		if in, ip := instr[name], instr["plain"]; in > 0 && ip > 0 {
			counts = fmt.Sprintf("%.0f | %+.0f", in, in-ip)
		}
		w("| %s | %d | %.0f | %.0f | %+.0f ns | %+.0f – %+.0f ns | %s | %s |\n", name, len(d), median(own), median(allocs),
			median(d), quantile(d, 0.25), quantile(d, 0.75), counts, met)
	}
	return nil
}

// writeHistogramCost reports, from histograms.txt (BenchmarkHistograms,
// one run per round), what the latency histograms cost a cache hit and a
// miss: per round, the case with them on over the case with them off; and
// from histograms-instr.tsv, the same ratio in instructions per query
// (cachegrind). Target: at most 2 % more, judged on instructions when
// they were counted (the timing on this machine is noisier than 2 %),
// else on the median timing ratio.
func writeHistogramCost(w func(string, ...any), dir string) error {
	rounds, _, err := readRounds(filepath.Join(dir, "histograms.txt"), "BenchmarkHistograms")
	if err != nil || rounds == nil {
		return err
	}
	instr, err := readInstructions(filepath.Join(dir, "histograms-instr.tsv"))
	if err != nil {
		return err
	}
	w("\n## Latency histogram cost\n\n")
	w("What the latency histograms (per listener and answer source) cost a query: `BenchmarkHistograms` in `edge/listen` serves the same cache hit, "+
		"and the same miss answered by an in-process upstream, through a listener core as the UDP listener does (finished and packed), "+
		"with the listener metrics on and the histograms off, then on; no socket, so the kernel's noise is not in it. "+
		"Timing: run %d times on core 0, the ratio taken per run. Instructions: counted by cachegrind, per query (runs of 20,000 and 60,000 queries, "+
		"so that the set-up cancels out). Target: at most 2 %% more per query, judged on instructions when counted.\n\n", len(rounds))
	w("| Query | runs | histograms off, cpu-ns/op (median) | on | ratio per run: median | middle half | instructions/query off | on | ratio | target met |\n")
	w("|---|---:|---:|---:|---:|---|---:|---:|---:|---|\n")
	for _, kind := range []string{"hit", "miss"} {
		offName, onName := kind+"/histograms=false", kind+"/histograms=true"
		r, off, on, _ := perRound(rounds, offName, onName, func(x, y float64) float64 { return y / x })
		timing := "| 0 | - | - | - | -"
		if len(r) > 0 {
			timing = fmt.Sprintf("| %d | %.0f | %.0f | %.3f | %.3f–%.3f", len(r), median(off), median(on),
				median(r), quantile(r, 0.25), quantile(r, 0.75))
		}
		counts, met := "| - | - | -", "no result"
		if io, in := instr[offName], instr[onName]; io > 0 && in > 0 {
			counts = fmt.Sprintf("| %.0f | %.0f | %.3f", io, in, in/io)
			met = yesNo(in/io <= 1.02)
		} else if len(r) > 0 {
			met = yesNo(median(r) <= 1.02)
		}
		w("| %s %s %s | %s |\n", kind, timing, counts, met)
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// readInstructions reads a file of "case<TAB>instructions per op" lines
// (micro_instructions in run.sh); a missing file gives none.
func readInstructions(path string) (map[string]float64, error) {
	rows, err := readOptionalTSV(path, 2)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, r := range rows {
		if v, err := strconv.ParseFloat(r[1], 64); err == nil && v > 0 {
			out[r[0]] = v
		}
	}
	return out, nil
}
