package zone

import (
	"errors"
	"fmt"
	"slices"
)

// A Feed gives the content of zones kept outside the configuration: the
// records API (edge/records). Watch calls put with the zone of every
// origin it is given before it returns, then again each time one of them
// changes, until stop is called; put is called by one goroutine at a time
// and must not call back into the feed. A change is visible to queries
// once put returns.
type Feed interface {
	Watch(origins []string, put func(*Zone)) (stop func(), err error)
}

// APIOrigins returns the origins of z's API zones (ZoneSpec.API), sorted.
func (z *Zones) APIOrigins() []string {
	out := make([]string, 0, len(z.api))
	for o := range z.api {
		out = append(out, o)
	}
	slices.Sort(out)
	return out
}

// Follow answers z's API zones from f: their content is what f gives,
// swapped in atomically as it changes (a query in flight keeps the zone it
// loaded). Until Follow they are not answered at all: their names go to
// the next stage. Follow may be called once; Close stops the feed.
func (z *Zones) Follow(f Feed) error {
	if len(z.api) == 0 {
		return nil
	}
	z.mu.Lock()
	followed := z.unfollow != nil
	z.mu.Unlock()
	if followed {
		return errors.New("zone: API zones already followed")
	}
	stop, err := f.Watch(z.APIOrigins(), z.put)
	if err != nil {
		return fmt.Errorf("zone: follow API zones: %w", err)
	}
	z.mu.Lock()
	z.unfollow = stop
	z.mu.Unlock()
	return nil
}

// put makes zn the content of its API zone and publishes it. A zone that
// is not one of z's API zones is ignored.
func (z *Zones) put(zn *Zone) {
	if zn == nil {
		return
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	pos, ok := z.api[zn.origin]
	if !ok {
		return
	}
	z.lists[listShared][pos] = zn
	if err := z.publish(); err != nil {
		// NewSet fails only on two zones of one origin, which Validate
		// refuses.
		z.log.Error("API zone not published", "zone", zn.origin, "error", err)
	}
}
