package transport

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
)

// Class is the outcome of one exchange on a path, as health sees it.
type Class uint8

// Outcome classes. Failure classes are kept apart so an operator can tell a
// blackholed path (timeouts) from a refused one (network) or an MTU hole
// (truncated).
const (
	// ClassOK: the upstream answered with a usable reply.
	ClassOK Class = iota
	// ClassRcode: the upstream answered SERVFAIL or REFUSED. The path
	// works; the answer is counted apart and is not a path failure.
	ClassRcode
	// ClassCanceled: the query was abandoned before the path had a chance
	// (the client went away). Not a failure, not a success.
	ClassCanceled
	// ClassTimeout: no reply within the attempt's timeout.
	ClassTimeout
	// ClassNetwork: the network said no (unreachable, refused, reset).
	ClassNetwork
	// ClassTruncated: the UDP answer was truncated and the TCP retry the
	// exchanger made itself failed (a UDP given a TCP exchanger, as the
	// bootstrap resolver's are). Upstream paths never see it: their
	// retry is an exchange of the path's TCP side (Path.Stream).
	ClassTruncated
	// ClassMalformed: the reply did not parse or did not match.
	ClassMalformed
	numClasses
)

var classNames = [...]string{"ok", "rcode", "canceled", "timeout", "network", "truncated", "malformed"}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "unknown"
}

// Failure reports whether c counts against the path.
func (c Class) Failure() bool { return c >= ClassTimeout }

// Classes lists every class, for metrics.
func Classes() []Class {
	cs := make([]Class, numClasses)
	for i := range cs {
		cs[i] = Class(i)
	}
	return cs
}

// Classify maps an exchange error to its class. A nil error is ClassOK.
func Classify(err error) Class {
	if err == nil {
		return ClassOK // before ee, which errors.As moves to the heap
	}
	var ee *ExchangeError
	switch {
	case errors.As(err, &ee):
		return ee.Class
	case errors.Is(err, ErrTruncated):
		return ClassTruncated
	case errors.Is(err, ErrMalformed):
		return ClassMalformed
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ClassTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ClassTimeout
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return ClassNetwork
	}
	return ClassNetwork
}
