package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The collector's target when GOGC is not set. A small heap gets
// defaultGCPercent: the heap may grow to five times what is live between
// collections, so a collection's marking (which delays the queries that
// arrive during it, one core being all a sidecar has) comes rarely. A
// large heap, which is almost all cache, cannot afford five times itself:
// the target falls as the live heap grows, so that the headroom stays
// about gcHeadroom, down to minGCPercent (twice what is live). One
// million cached entries then cost about 0.8 GiB of RSS rather than 1.3.
const (
	defaultGCPercent = 400
	minGCPercent     = 100
	gcHeadroom       = 256 << 20
	gcTuneEvery      = 2 * time.Second
)

// gcPercent returns the collector's target for a live heap of live bytes.
func gcPercent(live uint64) int {
	if live == 0 {
		return defaultGCPercent
	}
	return int(min(max(100*gcHeadroom/live, minGCPercent), defaultGCPercent))
}

// tuneGC sets the collector's target from the live heap every gcTuneEvery
// until ctx ends. It changes the target only when it moved by a tenth, so
// a heap hovering at a boundary does not flip it every tick.
func tuneGC(ctx context.Context) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	cur := defaultGCPercent
	debug.SetGCPercent(cur)
	t := time.NewTicker(gcTuneEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		if want := gcPercent(sample[0].Value.Uint64()); abs(want-cur)*10 >= cur {
			debug.SetGCPercent(want)
			cur = want
		}
	}
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
