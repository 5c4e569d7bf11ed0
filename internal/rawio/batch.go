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
