//go:build race

package listen

// raceEnabled tells tests that the race detector runs, which makes
// goroutine stacks and allocations bigger.
const raceEnabled = true
