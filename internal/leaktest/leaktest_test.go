package leaktest

import (
	"testing"
	"time"
)

// recorder is a testing.TB that records failures instead of stopping.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatalf(string, ...any) { r.failed = true }

func TestCheck(t *testing.T) {
	before := Snapshot()
	stop := make(chan struct{})
	go func() { <-stop }()
	r := &recorder{TB: t}
	Check(r, before, 100*time.Millisecond)
	if !r.failed {
		t.Fatal("a goroutine left running was not reported")
	}
	r = &recorder{TB: t}
	Check(r, before, 100*time.Millisecond, "leaktest.TestCheck")
	if r.failed {
		t.Fatal("an allowed goroutine was reported")
	}
	close(stop)
	r = &recorder{TB: t}
	Check(r, before, 2*time.Second)
	if r.failed {
		t.Fatal("a goroutine that ended was reported")
	}
}
