package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// exchanger sends one packed query on an open connection and returns the
// packed answer. It is safe for concurrent use.
type exchanger interface {
	exchange(ctx context.Context, q []byte) ([]byte, error)
	close()
}

// summary is what one load run measured.
type summary struct {
	sent, answered, lost, errors, noerror int
	seconds                               float64
	lat                                   []float64 // seconds; +Inf for lost queries
}

// String formats the summary as the key=value fields run.sh reads.
func (s summary) String() string {
	slices.Sort(s.lat)
	qps := 0.0
	if s.seconds > 0 {
		qps = float64(s.answered) / s.seconds
	}
	return fmt.Sprintf("sent=%d answered=%d lost=%d errors=%d noerror=%d seconds=%.3f qps=%.0f p50_ms=%s p99_ms=%s",
		s.sent, s.answered, s.lost, s.errors, s.noerror, s.seconds, qps,
		percentile(s.lat, 50), percentile(s.lat, 99))
}

// percentile is the nearest-rank percentile of sorted seconds in
// milliseconds, "timeout" when it falls on a lost query and "-" for none.
func percentile(sorted []float64, p float64) string {
	if len(sorted) == 0 {
		return "-"
	}
	rank := max(int(math.Ceil(p/100*float64(len(sorted)))), 1)
	v := sorted[rank-1]
	if math.IsInf(v, 1) {
		return "timeout"
	}
	return strconv.FormatFloat(v*1000, 'f', 3, 64)
}

// load dials o.conns connections and keeps o.outstanding queries in flight
// on each until o.duration passes or o.passes passes through queries are
// done, at most o.rate queries a second when o.rate is set.
func load(ctx context.Context, o options, queries [][]byte, dial func(context.Context) (exchanger, error)) (summary, error) {
	conns := make([]exchanger, o.conns)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var (
		wg      sync.WaitGroup
		dialErr error
		mu      sync.Mutex
	)
	for i := range conns {
		wg.Go(func() {
			c, err := dial(dctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				dialErr = fmt.Errorf("dial %s over %s: %w", o.addr, o.mode, err)
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
	}()
	if dialErr != nil {
		return summary{}, dialErr
	}

	limit := int64(math.MaxInt64)
	if o.passes > 0 {
		limit = int64(o.passes) * int64(len(queries))
	}
	start := time.Now()
	runCtx, stopRun := context.WithDeadline(ctx, start.Add(o.duration))
	defer stopRun()
	var tokens <-chan struct{}
	if o.rate > 0 {
		tokens = pace(runCtx, o.rate)
	}

	var (
		next     atomic.Int64
		reported atomic.Int32
		results  = make([]summary, o.conns*o.outstanding)
	)
	for w := range results {
		c := conns[w/o.outstanding]
		wg.Go(func() {
			s := &results[w]
			for runCtx.Err() == nil {
				if tokens != nil {
					select {
					case <-tokens:
					case <-runCtx.Done():
						return
					}
				}
				i := next.Add(1) - 1
				if i >= limit {
					return
				}
				q := queries[i%int64(len(queries))]
				s.sent++
				// Queries in flight when the run ends get their full timeout
				// (ctx, not runCtx), so none is cut short.
				qctx, cancel := context.WithTimeout(ctx, o.timeout)
				t0 := time.Now()
				b, err := c.exchange(qctx, q)
				rtt := time.Since(t0).Seconds()
				cancel()
				if err == nil {
					err = check(q, b, s)
				}
				if err != nil {
					s.lost++
					s.errors++
					s.lat = append(s.lat, math.Inf(1))
					if o.verbose && reported.Add(1) <= 5 {
						fmt.Fprintf(os.Stderr, "quicload: after %.3fs: %v\n", time.Since(start).Seconds(), err)
					}
					continue
				}
				s.answered++
				s.lat = append(s.lat, rtt)
			}
		})
	}
	wg.Wait()
	var total summary
	total.seconds = time.Since(start).Seconds()
	if o.passes == 0 {
		total.seconds = min(total.seconds, o.duration.Seconds())
	}
	for _, s := range results {
		total.sent += s.sent
		total.answered += s.answered
		total.lost += s.lost
		total.errors += s.errors
		total.noerror += s.noerror
		total.lat = append(total.lat, s.lat...)
	}
	return total, nil
}

// check unpacks an answer and counts NOERROR ones; an answer to another
// question is an error.
func check(q, b []byte, s *summary) error {
	var m dns.Msg
	if err := m.Unpack(b); err != nil {
		return fmt.Errorf("unpack answer: %w", err)
	}
	var qm dns.Msg
	if err := qm.Unpack(q); err != nil {
		return err
	}
	if len(m.Question) != 1 || m.Question[0].Name != qm.Question[0].Name || m.Id != 0 {
		return fmt.Errorf("answer to another question (id %d, %v)", m.Id, m.Question)
	}
	if m.Rcode == dns.RcodeSuccess {
		s.noerror++
	}
	return nil
}

// pace returns a channel that yields rate tokens a second until ctx ends.
// Tokens not taken are not banked beyond one tick's worth, so a server that
// falls behind is not hit by a burst when it catches up.
func pace(ctx context.Context, rate int) <-chan struct{} {
	ch := make(chan struct{}, max(rate/100, 1))
	go func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		start := time.Now()
		issued := int64(0)
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				due := int64(now.Sub(start).Seconds() * float64(rate))
				for ; issued < due; issued++ {
					select {
					case ch <- struct{}{}:
					case <-ctx.Done():
						return
					default:
						// Nobody free to send: drop the token (the run is
						// closed-loop at this point, as dnsperf -Q is).
					}
				}
			}
		}
	}()
	return ch
}
