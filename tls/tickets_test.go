package edgetls

import (
	"testing"
	"time"
)

type tickClock struct{ t time.Time }

func (c *tickClock) now() time.Time { return c.t }

// TestTicketKeysRotate: a key a day, each kept a week, the newest first.
func TestTicketKeysRotate(t *testing.T) {
	clk := &tickClock{t: time.Unix(1e9, 0)}
	k := NewTicketKeys(clk.now)
	first := k.Keys()
	if len(first) != 1 || first[0].Age != 0 {
		t.Fatalf("keys %v", first)
	}
	for day := 1; day <= 9; day++ {
		clk.t = clk.t.Add(TicketKeyRotation)
		k.current()
	}
	keys := k.Keys()
	if len(keys) != 7 {
		t.Fatalf("%d keys after 9 days, want 7", len(keys))
	}
	for i, key := range keys {
		if key.Age != time.Duration(i)*TicketKeyRotation {
			t.Fatalf("key %d: age %s", i, key.Age)
		}
		if key.Key == first[0].Key {
			t.Fatal("the first key outlived its week")
		}
	}
}

// TestTicketKeysRestore: restored keys age by the time they spent in
// between; expired ones are dropped, and with none left the own keys stay.
func TestTicketKeysRestore(t *testing.T) {
	clk := &tickClock{t: time.Unix(1e9, 0)}
	src := NewTicketKeys(clk.now)
	clk.t = clk.t.Add(TicketKeyRotation)
	src.current()
	keys := src.Keys()

	other := &tickClock{t: time.Unix(2e9, 0)}
	dst := NewTicketKeys(other.now)
	own := dst.Keys()
	if n := dst.Restore(keys, time.Hour); n != 2 {
		t.Fatalf("took %d keys, want 2", n)
	}
	got := dst.Keys()
	if len(got) != 2 || got[0].Key != keys[0].Key || got[1].Key != keys[1].Key || got[1].Age != 25*time.Hour {
		t.Fatalf("keys after restore %+v", got)
	}
	expired := []TicketKey{{Key: [32]byte{1}, Age: TicketKeyLifetime}}
	dst2 := NewTicketKeys(other.now)
	own = dst2.Keys()
	if n := dst2.Restore(expired, 0); n != 0 || dst2.Keys()[0].Key != own[0].Key {
		t.Fatal("expired keys replaced the own ones")
	}
	if n := dst2.Restore([]TicketKey{{Key: [32]byte{2}, Age: 1 << 62}}, 1<<62); n != 0 {
		t.Fatal("an age that overflows was taken")
	}
}
