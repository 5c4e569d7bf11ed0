package main

import (
	"context"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The collector's target when GOGC is not set: the heap may grow past
// what is live by a bounded headroom, not by a multiple of it. The
// headroom is the live heap up to midHeadroom (as GOGC=100 would have
// it), then midHeadroom until half the live heap is more, then half the
// live heap; at least minHeadroom (so that a small heap is not collected
// after every few hundred queries: on one core a collection's marking
// delays the queries that arrive during it) and at most maxHeadroom.
// Every collection marks the whole live heap, so a headroom of half of
// it collects twice as often as one of all of it: with a cache of
// 200,000 answers (about 45 MiB live) that cost about 7% of the CPU of
// a forwarded query at full rate. Past midHeadroom the memory counts
// more than the collections. It is set two ways:
//
//   - GOGC, as the headroom's share of the live heap (at most
//     maxGCPercent), so that the heap goal is about live + headroom;
//   - a soft memory limit (debug.SetMemoryLimit) of what the runtime
//     holds besides the heap, plus live, plus twice the headroom. It
//     caps the heap when the live heap grew faster than the tuner looked
//     (a restored cache), and makes the scavenger give back to the OS
//     what a burst left above it. A GOMEMLIMIT set in the environment
//     stays the upper bound.
//
// Peak RSS then follows the live heap plus a bounded headroom: about 1.5
// times a million-entry cache, at most twice a small one and 64 MiB
// above a middling one, where a fixed GOGC of 400 made it five times
// what is live.
//
// The collector runs only as the heap grows, so what a burst left behind
// (a thousand TLS handshakes, then as many idle connections) would stay
// mapped until traffic resumes. When a tick finds the process quiet (less
// than quietAlloc allocated since the tick before) holding at least
// quietGarbage of heap beyond what is live, free or not yet collected, it
// collects and gives the memory back to the OS (debug.FreeOSMemory): once
// per quiet stretch, since after that nothing is left to give.
const (
	minHeadroom  = 16 << 20
	midHeadroom  = 64 << 20
	maxHeadroom  = 256 << 20
	maxGCPercent = 400
	gcTuneEvery  = time.Second
	quietAlloc   = 512 << 10
	quietGarbage = 4 << 20
)

// A gcTarget is what the tuner sets: GOGC and the soft memory limit.
type gcTarget struct {
	percent int
	limit   int64
}

// targetFor returns the collector's target for a live heap of live bytes
// while the runtime holds other bytes outside the heap (stacks, GC
// metadata, spans), capped by the limit set in the environment, envLimit
// (math.MaxInt64 when none).
func targetFor(live, other uint64, envLimit int64) gcTarget {
	headroom := min(max(min(live, max(live/2, midHeadroom)), minHeadroom), maxHeadroom)
	percent := maxGCPercent
	if live > 0 {
		percent = int(min(100*headroom/live, maxGCPercent))
	}
	limit := other + live + 2*headroom
	if limit > uint64(envLimit) {
		return gcTarget{percent: percent, limit: envLimit}
	}
	return gcTarget{percent: percent, limit: int64(limit)}
}

// Runtime metrics the tuner reads.
var gcSamples = []string{
	"/gc/heap/live:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/gc/heap/allocs:bytes",
}

// quiet reports whether a tick that found allocated bytes allocated in
// all (and before at the tick before), a live heap of live bytes, and
// objects bytes in heap objects (live or not yet collected) and free
// bytes in free heap spans not given back, should collect and give back
// memory (see quietAlloc).
func quiet(allocated, before, live, objects, free uint64) bool {
	if before == 0 || allocated-before >= quietAlloc || objects < live {
		return false
	}
	return objects-live+free >= quietGarbage
}

// readGC returns the live heap and what the runtime holds outside the
// heap, mapped and not given back to the OS; ok is false when the
// runtime does not report them.
func readGC(s []metrics.Sample) (live, other uint64, ok bool) {
	metrics.Read(s)
	for _, x := range s {
		if x.Value.Kind() != metrics.KindUint64 {
			return 0, 0, false
		}
	}
	v := func(i int) uint64 { return s[i].Value.Uint64() }
	heap := v(2) + v(3) + v(4) + v(5)
	if v(1) < heap {
		return v(0), 0, true
	}
	return v(0), v(1) - heap, true
}

// tuneGC sets the collector's target from the live heap every
// gcTuneEvery until ctx ends. It changes GOGC only when it moved by a
// tenth, so a heap hovering at a boundary does not flip it every tick.
func tuneGC(ctx context.Context) {
	s := make([]metrics.Sample, len(gcSamples))
	for i, name := range gcSamples {
		s[i].Name = name
	}
	envLimit := int64(math.MaxInt64)
	if os.Getenv("GOMEMLIMIT") != "" {
		// The runtime parsed it at start; a limit the tuner set
		// itself is never read back as the user's.
		envLimit = debug.SetMemoryLimit(-1)
	}
	cur := targetFor(0, 0, math.MaxInt64).percent
	debug.SetGCPercent(cur)
	t := time.NewTicker(gcTuneEvery)
	defer t.Stop()
	var allocated uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		live, other, ok := readGC(s)
		if !ok {
			return
		}
		before := allocated
		allocated = s[6].Value.Uint64()
		if live == 0 {
			continue // no collection yet
		}
		if quiet(allocated, before, live, s[4].Value.Uint64(), s[3].Value.Uint64()) {
			debug.FreeOSMemory()
			live, other, _ = readGC(s)
			allocated = s[6].Value.Uint64()
		}
		want := targetFor(live, other, envLimit)
		if abs(want.percent-cur)*10 >= cur {
			debug.SetGCPercent(want.percent)
			cur = want.percent
		}
		debug.SetMemoryLimit(want.limit)
	}
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
