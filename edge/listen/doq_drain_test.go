package listen

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// TestDoQDrainConns drains a DoQ listener with a deadline far away: an
// idle connection is closed at once with DOQ_NO_ERROR, one with a query in
// flight stays open until the query is answered and is closed then, a
// connection opened during the drain is served and closed once idle, and
// DrainConns returns when none is left.
func TestDoQDrainConns(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		if req.Question().Name == "slow.example." {
			close(entered)
			<-release
		}
		return answerA(ctx, req)
	}}
	s := startDoQ(t, testConfig(t, fam4, h))
	idle, busy := s.dial(t, "dns.test"), s.dial(t, "dns.test")
	ask := func(c interface {
		Exchange(context.Context, *dns.Msg) (*dns.Msg, error)
	}, name string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Exchange(ctx, query(name, dns.TypeA))
		return err
	}
	if err := ask(idle, "example.org."); err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	go func() { answered <- ask(busy, "slow.example.") }()
	<-entered

	drained := make(chan error, 1)
	go func() { drained <- s.DrainConns(time.Hour) }()
	if code, cause := closedWith(idle.Conn(), 5*time.Second); code != doqNoError {
		t.Fatalf("idle connection: closed with %d (%v), want DOQ_NO_ERROR", code, cause)
	}
	if err := busy.Conn().Context().Err(); err != nil {
		t.Fatalf("connection with a query in flight closed: %v", context.Cause(busy.Conn().Context()))
	}
	close(release)
	if err := <-answered; err != nil {
		t.Errorf("query in flight when the drain began: %v", err)
	}
	if code, cause := closedWith(busy.Conn(), 5*time.Second); code != doqNoError {
		t.Errorf("connection once its query was answered: closed with %d (%v), want DOQ_NO_ERROR", code, cause)
	}

	late, err := s.tryDial("dns.test")
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	if err := ask(late, "example.org."); err != nil {
		t.Errorf("connection opened while draining: %v", err)
	}
	if code, cause := closedWith(late.Conn(), 5*time.Second); code != doqNoError {
		t.Errorf("connection opened while draining: closed with %d (%v), want DOQ_NO_ERROR", code, cause)
	}
	select {
	case err := <-drained:
		if err != nil {
			t.Errorf("DrainConns: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("DrainConns did not return once every connection was closed")
	}
}

// TestDoQDrainConnsDeadline drains a DoQ listener with a short deadline
// while a client keeps queries in flight on its connection, one of them
// held by the handler past the deadline: the connection stays open until
// that query is answered and is closed then with DOQ_NO_ERROR; every
// query of the client is answered or fails with that close; DrainConns
// returns.
func TestDoQDrainConnsDeadline(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		if req.Question().Name == "slow.example." {
			close(entered)
			<-release
		}
		return answerA(ctx, req)
	}}
	s := startDoQ(t, testConfig(t, fam4, h))
	c := s.dial(t, "dns.test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var (
		ok   atomic.Int64
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	slow := make(chan error, 1)
	go func() {
		_, err := c.Exchange(ctx, query("slow.example.", dns.TypeA))
		slow <- err
	}()
	<-entered
	for range 3 {
		wg.Go(func() {
			for ctx.Err() == nil && c.Conn().Context().Err() == nil {
				if _, err := c.Exchange(ctx, query("example.org.", dns.TypeA)); err != nil {
					fail(err)
					return
				}
				ok.Add(1)
			}
		})
	}
	const deadline = 100 * time.Millisecond
	drained := make(chan error, 1)
	go func() { drained <- s.DrainConns(deadline) }()
	if !eventually(5*time.Second, func() bool {
		ph := s.phase.Load()
		return ph.draining && !time.Now().Before(ph.deadline)
	}) {
		t.Fatal("drain deadline not reached")
	}
	if err := c.Conn().Context().Err(); err != nil {
		t.Fatalf("connection with a query in flight closed before it was answered: %v", context.Cause(c.Conn().Context()))
	}
	close(release)
	if err := <-slow; err != nil {
		t.Errorf("query in flight at the deadline: %v", err)
	}
	if code, cause := closedWith(c.Conn(), 5*time.Second); code != doqNoError {
		t.Fatalf("connection: closed with %d (%v), want DOQ_NO_ERROR", code, cause)
	}
	wg.Wait()
	for _, err := range errs {
		var ae *quic.ApplicationError
		if !errors.As(err, &ae) || ae.ErrorCode != doqNoError {
			t.Errorf("query failed otherwise than by the close: %v", err)
		}
	}
	t.Logf("%d queries answered, %d failed with the close", ok.Load(), len(errs))
	if err := <-drained; err != nil {
		t.Errorf("DrainConns: %v", err)
	}
}

// TestDoQStopDrainConns ends a drain before its deadline: a connection
// that had a query in flight is served on and not closed when idle.
func TestDoQStopDrainConns(t *testing.T) {
	s := startDoQ(t, testConfig(t, fam4, &fakeHandler{t: t, serve: answerA}))
	drained := make(chan error, 1)
	go func() { drained <- s.DrainConns(time.Hour) }()
	if !eventually(5*time.Second, func() bool { return s.phase.Load().draining }) {
		t.Fatal("drain did not begin")
	}
	s.StopDrainConns()
	if err := <-drained; err != nil {
		t.Errorf("DrainConns: %v", err)
	}
	c := s.dial(t, "dns.test")
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.Exchange(ctx, query("example.org.", dns.TypeA))
		cancel()
		if err != nil {
			t.Fatalf("after StopDrainConns: %v", err)
		}
	}
	if s.phase.Load().draining || c.Conn().Context().Err() != nil {
		t.Error("still draining after StopDrainConns")
	}
}
