package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
)

// randomInput draws a query from the vocabulary of mixedPolicy(n): values
// some rule names, values none does, and every number of tags.
func randomInput(r *rand.Rand, n int) *Input {
	i := r.IntN(n + 8)
	in := &Input{QType: []uint16{1, 28, 16, 65}[r.IntN(4)], Listener: listenerKinds[r.IntN(len(listenerKinds))]}
	switch r.IntN(4) {
	case 0:
		in.Source = netip.AddrFrom4([4]byte{10, byte(i / 256), byte(i), byte(r.IntN(256))})
	case 1:
		in.Source = netip.AddrFrom4([4]byte{10, byte(i), 1, 1})
	case 2:
		in.Source = netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::1", i))
	default:
		in.Source = netip.MustParseAddr("203.0.113.9")
	}
	switch r.IntN(4) {
	case 0:
		in.ClientID = fmt.Sprintf("c%d", i)
	case 1:
		in.ClientID = fmt.Sprintf("w%d", i)
	case 2:
		in.ClientID = "nobody"
	}
	switch r.IntN(5) {
	case 0:
		in.QName = fmt.Sprintf("api%d.example.org.", i)
	case 1:
		in.QName = fmt.Sprintf("www.z%d.example.com.", i)
	case 2:
		in.QName = fmt.Sprintf("a.z%d.example.net.", i)
	case 3:
		in.QName = fmt.Sprintf("z%d.example.com.", i)
	default:
		in.QName = "miss.example.org."
	}
	if r.IntN(3) == 0 {
		in.ECS = netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, byte(i), 0}), 24)
	}
	for range r.IntN(4) {
		in.Tags = append(in.Tags, []string{fmt.Sprintf("t%d", i), fmt.Sprintf("t%d", r.IntN(n)), "x", "env=prod"}[r.IntN(4)])
	}
	return in
}

// TestMemoAgreesWithWalk checks that a decision through the memo, the
// first time and once remembered, is the rule the walk over the groups
// finds, over more signatures than the memo has slots.
func TestMemoAgreesWithWalk(t *testing.T) {
	for _, n := range []int{10, 100, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			p, _ := mixedPolicy(t, n)
			if p.m.memo == nil {
				t.Fatal("a matcher of several groups has no memo")
			}
			r := rand.New(rand.NewPCG(1, uint64(n)))
			ins := make([]*Input, 5000)
			for i := range ins {
				ins[i] = randomInput(r, n)
			}
			matched := 0
			for pass := range 2 {
				for _, in := range ins {
					var q lookups
					want := q.walk(p.m, in)
					if got := p.m.first(in, nil); got != want {
						t.Fatalf("pass %d, %+v: memo gives rule %d, the walk %d", pass, in, got, want)
					}
					if want >= 0 && p.rules[want].decision.Rule != "default" {
						matched++
					}
				}
			}
			if matched < len(ins)/10 {
				t.Fatalf("only %d of %d decisions reached a rule of their own: the inputs miss the policy", matched, 2*len(ins))
			}
		})
	}
}

// TestMemoConcurrent decides from several goroutines at once, so that
// the race detector sees the memo's slots written while read.
func TestMemoConcurrent(t *testing.T) {
	p, _ := mixedPolicy(t, 100)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 2))
			for range 2000 {
				in := randomInput(r, 100)
				var q lookups
				if want, got := q.walk(p.m, in), p.m.first(in, nil); got != want {
					t.Errorf("%+v: memo gives rule %d, the walk %d", in, got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}
