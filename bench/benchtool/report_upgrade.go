package main

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strconv"
)

// writeUpgrade writes the upgrade section when upgrade.tsv or state.tsv
// exists (bench/upgrade.sh): the time from `dnsedge upgrade` to the new
// process serving, and the size and time of the state a new process takes
// over at a million cache entries.
func writeUpgrade(w func(string, ...any), dir string) error {
	up, err := readTSV(filepath.Join(dir, "upgrade.tsv"), 3)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	st, err := readTSV(filepath.Join(dir, "state.tsv"), 6)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if len(up) == 0 && len(st) == 0 {
		return nil
	}
	w("\n## Binary upgrade\n\n")
	if len(up) > 0 {
		w("`dnsedge upgrade` against a dnsedge serving UDP and TCP, from the command to the new process serving (the command returns once the new process has read the state and its listeners serve): median **%s ms** (each round: %s ms).\n", up[0][1], up[0][2])
	}
	if len(st) > 0 {
		r := st[0]
		bytes, err := strconv.ParseFloat(r[1], 64)
		if err != nil {
			return errors.New("state.tsv: bad size " + strconv.Quote(r[1]))
		}
		w("\nThe state a new process takes over, with %s cache entries (edge's `BenchmarkState1M`: CNAME and A answers): %.1f MiB (%.0f bytes per entry); written in %s ms (%s ms of CPU), read in %s ms (%s ms of CPU).\n",
			r[0], bytes/(1<<20), bytes/atof(r[0]), r[2], r[4], r[3], r[5])
	}
	return nil
}

func atof(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	if v == 0 {
		return 1
	}
	return v
}
