package rawio

import (
	"net"

	"golang.org/x/net/ipv4"
)

// Batcher reads and writes several datagrams per system call.
type Batcher interface {
	// ReadBatch reads at least one datagram, waiting for one, and at
	// most len(ms), as many as are waiting. Each message's Buffers and
	// OOB are where its datagram and control messages go; N, NN, Flags
	// and Addr (a *net.UDPAddr) are set for the messages read. On
	// Linux an Addr is valid until the next ReadBatch only: callers copy
	// what they keep (AddrPort does).
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	// WriteBatch writes the messages of ms, each to its Addr (a
	// *net.UDPAddr), and returns how many were written. When the first
	// one fails it returns 0 and the error.
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// NewBatcher returns the Batcher of c, a UDP socket of family IPv6 when v6.
// It must not be used after c is closed.
func NewBatcher(c *net.UDPConn, v6 bool) (Batcher, error) { return newBatcher(c, v6) }

// ReadLoop reads batches of datagrams from b into ms and hands each to
// handle with the count read, until handle returns 0 or a read fails. It
// returns that read's error, or nil when handle stopped it. handle
// returns how many datagrams to ask for next (at most len(ms)); first is
// how many the first read asks for. A message's Addr is valid until
// handle returns.
//
// On Linux a datagram that comes alone costs one recvmmsg instead of two
// (see conn.readLoop). A deadline set on the socket stops the loop only
// while it waits: handle checks what else should stop it.
func ReadLoop(b Batcher, ms []ipv4.Message, flags, first int, handle func(n int) int) error {
	if l, ok := b.(interface {
		readLoop([]ipv4.Message, int, int, func(int) int) error
	}); ok {
		return l.readLoop(ms, flags, first, handle)
	}
	want := min(first, len(ms))
	for want > 0 {
		n, err := b.ReadBatch(ms[:want], flags)
		if err != nil {
			return err
		}
		want = min(handle(n), len(ms))
	}
	return nil
}
