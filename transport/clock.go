package transport

import (
	"reflect"
	"time"

	"github.com/jonboulle/clockwork"
)

// realClock is the type of clockwork's real clock, whose Since and Until
// read the wall clock as well as the monotonic one (they call time.Now).
var realClock = reflect.TypeOf(clockwork.NewRealClock())

// since is c.Since(t), and until c.Until(t), but on the real clock they
// take the monotonic reading alone (time.Since, time.Until): a duration
// needs nothing more, and on a virtual machine's clock source (kvm-clock)
// that is half the cost of time.Now, read several times per forwarded
// query. t must have come from c.
func since(c clockwork.Clock, t time.Time) time.Duration {
	if reflect.TypeOf(c) == realClock {
		return time.Since(t)
	}
	return c.Since(t)
}

func until(c clockwork.Clock, t time.Time) time.Duration {
	if reflect.TypeOf(c) == realClock {
		return time.Until(t)
	}
	return c.Until(t)
}
