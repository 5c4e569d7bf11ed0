// Package leaktest finds goroutines a test left running: take a Snapshot
// before, call Check after.
package leaktest

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// Snapshot returns the ids of the running goroutines.
func Snapshot() map[string]bool {
	ids := make(map[string]bool)
	for _, g := range stacks() {
		ids[strings.Fields(g)[1]] = true
	}
	return ids
}

func stacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(string(buf[:n]), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// Check waits up to wait for every goroutine started after before to end,
// ignoring those whose stack contains one of allowed, and fails t with
// the stacks of the ones still running.
func Check(t testing.TB, before map[string]bool, wait time.Duration, allowed ...string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		var leaked []string
	next:
		for _, g := range stacks() {
			if before[strings.Fields(g)[1]] {
				continue
			}
			for _, a := range allowed {
				if strings.Contains(g, a) {
					continue next
				}
			}
			leaked = append(leaked, g)
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines leaked:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
