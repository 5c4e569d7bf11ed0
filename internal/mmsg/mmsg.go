// Package mmsg reads and writes batches of UDP datagrams on one socket
// (recvmmsg and sendmmsg), with golang.org/x/net's ipv4.Message as the
// message type, like ipv4.PacketConn's ReadBatch and WriteBatch.
//
// On Linux the system calls are made without telling the Go scheduler
// (the socket is non-blocking, so they never block), waiting for the
// socket through the runtime's poller as usual. A system call the
// scheduler is told of wakes its monitor thread (sysmon) when the process
// was idle, which then sleeps and wakes a few more times before it goes
// back to sleep: at a low query rate that was about two thread wake-ups
// per query, more than the query's own work. Elsewhere Conn is
// ipv4.PacketConn or ipv6.PacketConn.
package mmsg

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

// New returns the Batcher of c, a UDP socket of family IPv6 when v6.
// It must not be used after c is closed.
func New(c *net.UDPConn, v6 bool) (Batcher, error) { return newBatcher(c, v6) }
