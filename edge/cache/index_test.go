package cache

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// indexEntry returns an entry stored under key with the hash h, as
// shard.put would set it.
func indexEntry(key string, h uint64) *entry {
	e := newEntry([]byte(key), []byte("m"), nil, time.Unix(0, 0), 60, 0)
	e.hash = h
	return e
}

// TestIndex runs sequences of adds and removes whose hashes are chosen to
// collide: the same slot, the same tag, the same whole hash, probe runs
// that wrap around the end of the table.
func TestIndex(t *testing.T) {
	t.Parallel()
	// slot returns a hash whose home is slot i of a minIndex-slot table,
	// with tag bits tag and low bits low (which pick the shard).
	slot := func(i int, tag, low uint64) uint64 { return tag<<57 | uint64(i)<<8 | low }
	type op struct {
		add    bool
		key    string
		h      uint64
		wantOK bool // remove: whether it was held
	}
	tests := []struct {
		name string
		ops  []op
	}{
		{"one entry", []op{{add: true, key: "a", h: slot(1, 3, 0)}}},
		{"same slot, different tags", []op{
			{add: true, key: "a", h: slot(2, 1, 0)}, {add: true, key: "b", h: slot(2, 2, 0)},
			{add: true, key: "c", h: slot(2, 3, 0)}, {key: "b", h: slot(2, 2, 0), wantOK: true},
		}},
		{"same whole hash, different keys", []op{
			{add: true, key: "a", h: slot(5, 7, 1)}, {add: true, key: "b", h: slot(5, 7, 1)},
			{key: "a", h: slot(5, 7, 1), wantOK: true},
		}},
		{"probe run wraps around the end", []op{
			{add: true, key: "a", h: slot(6, 1, 0)}, {add: true, key: "b", h: slot(7, 1, 0)},
			{add: true, key: "c", h: slot(6, 2, 0)}, {add: true, key: "d", h: slot(7, 2, 0)},
			{add: true, key: "e", h: slot(0, 1, 0)},
			{key: "a", h: slot(6, 1, 0), wantOK: true}, {key: "b", h: slot(7, 1, 0), wantOK: true},
		}},
		{"removing from the middle of a run keeps the rest reachable", []op{
			{add: true, key: "a", h: slot(3, 1, 0)}, {add: true, key: "b", h: slot(3, 2, 0)},
			{add: true, key: "c", h: slot(4, 1, 0)}, {add: true, key: "d", h: slot(3, 3, 0)},
			{key: "b", h: slot(3, 2, 0), wantOK: true}, {key: "b", h: slot(3, 2, 0), wantOK: false},
		}},
		{"growing past 7/8", func() []op {
			var ops []op
			for i := range 20 {
				ops = append(ops, op{add: true, key: fmt.Sprint(i), h: slot(i%3, uint64(i%2), 0)})
			}
			return append(ops, op{key: "7", h: slot(7%3, 1, 0), wantOK: true})
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var x index
			held := map[string]*entry{}
			for i, o := range tt.ops {
				if o.add {
					e := indexEntry(o.key, o.h)
					x.add(e)
					held[o.key] = e
				} else {
					e := held[o.key]
					if e == nil {
						e = indexEntry(o.key, o.h)
					}
					if got := x.remove(e); got != o.wantOK {
						t.Fatalf("op %d: remove(%q) = %v, want %v", i, o.key, got, o.wantOK)
					}
					delete(held, o.key)
				}
				checkIndex(t, &x, held)
			}
		})
	}
}

// checkIndex fails unless x holds exactly the entries of want, each
// found under its key, and keeps its load at most 7/8.
func checkIndex(t *testing.T, x *index, want map[string]*entry) {
	t.Helper()
	if x.len() != len(want) {
		t.Fatalf("len %d, want %d", x.len(), len(want))
	}
	for k, e := range want {
		if got := x.get(e.hash, []byte(k)); got != e {
			t.Fatalf("get(%q) = %p, want %p", k, got, e)
		}
	}
	if len(x.tags) > 0 && x.n*8 > len(x.tags)*7 {
		t.Fatalf("%d entries in %d slots", x.n, len(x.tags))
	}
}

// TestIndexRandom runs random adds, replacements, removes and lookups
// against a map as the oracle, with hashes drawn from a few bits so that
// collisions of every kind are common.
func TestIndexRandom(t *testing.T) {
	t.Parallel()
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 14))
			var x index
			oracle := map[string]*entry{}
			// hashOf gives each key a fixed hash of 6 random bits spread
			// over tag, slot and shard bits.
			hashOf := func(k string) uint64 {
				r := rand.New(rand.NewPCG(uint64(len(k)), uint64(k[len(k)-1])+seed))
				b := r.Uint64() & 0x3F
				return (b&3)<<57 | (b>>2&3)<<8 | b>>4
			}
			for i := range 20000 {
				k := fmt.Sprint("k", rng.IntN(300))
				h := hashOf(k)
				switch rng.IntN(4) {
				case 0, 1: // store, replacing any entry under k, as shard.put does
					if old := x.get(h, []byte(k)); old != nil {
						if !x.remove(old) {
							t.Fatalf("op %d: held entry %q not removed", i, k)
						}
					}
					e := indexEntry(k, h)
					x.add(e)
					oracle[k] = e
				case 2:
					e := oracle[k]
					if e == nil {
						if x.get(h, []byte(k)) != nil {
							t.Fatalf("op %d: %q found, not stored", i, k)
						}
						continue
					}
					if !x.remove(e) {
						t.Fatalf("op %d: remove(%q) found nothing", i, k)
					}
					if x.remove(e) {
						t.Fatalf("op %d: %q removed twice", i, k)
					}
					delete(oracle, k)
				case 3:
					if got := x.get(h, []byte(k)); got != oracle[k] {
						t.Fatalf("op %d: get(%q) = %p, want %p", i, k, got, oracle[k])
					}
				}
				if i%500 == 0 {
					checkIndex(t, &x, oracle)
				}
			}
			checkIndex(t, &x, oracle)
			x.reserve(1000)
			checkIndex(t, &x, oracle)
		})
	}
}
