// Package transport talks to upstream servers. An Exchanger sends one query
// to one address over one protocol; a Path pairs an exchanger with its own
// Health; a Group runs a strategy over its paths and races them the Happy
// Eyeballs way (RFC 8305).
package transport

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/miekg/dns"
)

// An Exchanger sends a query to one upstream address over one protocol and
// returns the matching reply. The ctx deadline is its only timeout. It never
// touches path health: it reports what happened through the error, which
// Classify turns into a failure class.
//
// Exchange must not modify q; it sends a copy with its own message ID and
// returns a reply whose ID is q's. Implementations are safe for concurrent
// use.
type Exchanger interface {
	Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error)
	Close() error
}

// Family is an IP address family. A path is pinned to exactly one.
type Family uint8

// Address families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return "unknown"
}

// FamilyOf returns the family of a, treating IPv4-mapped IPv6 addresses as
// IPv4.
func FamilyOf(a netip.Addr) Family {
	if a.Unmap().Is4() {
		return IPv4
	}
	return IPv6
}

// Network returns the Go network name pinned to f for a base protocol
// ("udp" or "tcp"): "udp4", "tcp6", and so on. Dialing with it guarantees
// an IPv4 path never sends on an IPv6 socket and the reverse.
func (f Family) Network(proto string) string {
	if f == IPv6 {
		return proto + "6"
	}
	return proto + "4"
}

// EDNSBufferSize is the UDP payload size dnsedge advertises upstream: the
// DNS Flag Day 2020 value, small enough to pass any path MTU without
// fragmentation.
const EDNSBufferSize = 1232

// Errors an exchanger returns; Classify maps them to failure classes.
var (
	// ErrTruncated: a UDP answer was truncated and the retry over TCP
	// failed as well.
	ErrTruncated = errors.New("answer truncated and TCP retry failed")
	// ErrMalformed: the reply could not be parsed or did not match the
	// question.
	ErrMalformed = errors.New("malformed reply")
)

// ExchangeError wraps an exchange failure with the class it belongs to.
type ExchangeError struct {
	Class Class
	Err   error
}

func (e *ExchangeError) Error() string { return fmt.Sprintf("%s: %v", e.Class, e.Err) }
func (e *ExchangeError) Unwrap() error { return e.Err }
