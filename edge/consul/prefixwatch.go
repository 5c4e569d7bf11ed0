package consul

import (
	"context"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/jonboulle/clockwork"
)

// KVPair is one key under a watched prefix, with the index of its last
// write (the index a check-and-set on it names).
type KVPair struct {
	Key         string
	Value       []byte
	ModifyIndex uint64
}

// PrefixWatch follows every key under a KV prefix with blocking queries,
// under the rules of the service watches: the index reset when it goes
// backwards and never blocked on 0, a token bucket rather than sleeps,
// backoff with jitter capped at 5 s, and a change handed on only when a
// key was written, created or deleted (not when the index moved with
// other keys). Safe for concurrent use.
type PrefixWatch struct {
	w *watch[[]KVPair]
}

// WatchPrefix starts watching prefix with client. onChange is called
// from the watch's goroutine with every key under prefix, sorted by key,
// first when the watch reads the prefix, then after each change; calls
// never overlap. clock nil is the real clock. Close stops it.
func WatchPrefix(client *api.Client, prefix string, onChange func([]KVPair), clock clockwork.Clock) *PrefixWatch {
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	fetch := func(ctx context.Context, index uint64) ([]KVPair, uint64, error) {
		q := &api.QueryOptions{WaitIndex: index, WaitTime: BlockWait}
		pairs, meta, err := client.KV().List(prefix, q.WithContext(ctx))
		if err != nil {
			return nil, 0, err
		}
		out := make([]KVPair, len(pairs))
		for i, p := range pairs {
			out[i] = KVPair{Key: p.Key, Value: p.Value, ModifyIndex: p.ModifyIndex}
		}
		return out, meta.LastIndex, nil
	}
	pw := &PrefixWatch{w: newWatch(fetch, equalPairs, clock)}
	pw.w.onSwap = onChange
	pw.w.start()
	return pw
}

// equalPairs reports whether a and b hold the same keys at the same
// writes: every write moves a key's ModifyIndex.
func equalPairs(a, b []KVPair) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || a[i].ModifyIndex != b[i].ModifyIndex {
			return false
		}
	}
	return true
}

// WaitReady waits up to d for the first read of the prefix, or until
// ctx ends; it reports whether there was one.
func (pw *PrefixWatch) WaitReady(ctx context.Context, d time.Duration) bool {
	return pw.w.waitReady(ctx, d)
}

// Requests returns how many requests the watch has sent.
func (pw *PrefixWatch) Requests() uint64 { return pw.w.requests.Load() }

// Close stops the watch and waits for it.
func (pw *PrefixWatch) Close() error {
	pw.w.stop()
	return nil
}
