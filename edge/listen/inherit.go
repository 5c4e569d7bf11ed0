package listen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
)

// A Socket is one socket of a listener, as handed to the process that
// replaces this one on a binary upgrade: the same socket, not a new one
// beside it, so that nothing the kernel queued on it is lost.
type Socket struct {
	// Network is "udp4", "udp6", "tcp4", "tcp6", "tcp" (the metrics and
	// admin endpoints, bound with either family) or "unix" (the control
	// socket, and the pair a QUIC socket's packets are forwarded on, see
	// IsQUICPair).
	Network string
	// Addr is the address as configured (a port 0 stays 0), which is
	// what the new process's listener asks for.
	Addr string
	// Index tells apart the sockets of one address: the UDP sockets of
	// one SO_REUSEPORT group are 0, 1, ...
	Index int
	// File is a duplicate of the socket's descriptor, owned by the
	// holder of the Socket.
	File *os.File
}

// Key returns the name of s in the list handed to a new process:
// "network address index".
func (s Socket) Key() string { return SocketKey(s.Network, s.Addr, s.Index) }

// SocketKey returns the key of the socket network, addr, index.
func SocketKey(network, addr string, index int) string {
	return network + " " + addr + " " + strconv.Itoa(index)
}

// ParseSocketKey splits a key made by SocketKey.
func ParseSocketKey(key string) (network, addr string, index int, err error) {
	f := strings.Fields(key)
	if len(f) != 3 {
		return "", "", 0, fmt.Errorf("socket key %q: want \"network address index\"", key)
	}
	index, err = strconv.Atoi(f[2])
	if err != nil || index < 0 {
		return "", "", 0, fmt.Errorf("socket key %q: bad index", key)
	}
	switch f[0] {
	case "udp4", "udp6", "tcp", "tcp4", "tcp6", "unix":
	default:
		return "", "", 0, fmt.Errorf("socket key %q: unknown network %q", key, f[0])
	}
	return f[0], f[1], index, nil
}

// Inherited is the set of sockets a process was handed by the one it
// replaces. Listeners take their sockets from it instead of binding, and
// bind only what it lacks. A nil *Inherited holds nothing. It is safe for
// concurrent use.
type Inherited struct {
	mu sync.Mutex
	m  map[string]*os.File
}

// NewInherited returns the set of socks; it owns their files from then on.
func NewInherited(socks []Socket) *Inherited {
	in := &Inherited{m: make(map[string]*os.File, len(socks))}
	for _, s := range socks {
		in.m[s.Key()] = s.File
	}
	return in
}

// take removes and returns the file of the socket, nil when there is none.
func (in *Inherited) take(network, addr string, index int) *os.File {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	k := SocketKey(network, addr, index)
	f := in.m[k]
	delete(in.m, k)
	return f
}

// count returns how many sockets of network and addr the set holds,
// counting consecutive indexes from 0.
func (in *Inherited) count(network, addr string) int {
	if in == nil {
		return 0
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	n := 0
	for {
		if _, ok := in.m[SocketKey(network, addr, n)]; !ok {
			return n
		}
		n++
	}
}

// Len returns the number of sockets not taken yet.
func (in *Inherited) Len() int {
	if in == nil {
		return 0
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.m)
}

// Close closes the sockets no listener took.
func (in *Inherited) Close() error {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	var errs []error
	for k, f := range in.m {
		errs = append(errs, f.Close())
		delete(in.m, k)
	}
	return errors.Join(errs...)
}

// TakeListener returns the inherited stream listener of network and
// addr (index 0), nil when there is none. For listeners outside this
// package: the metrics and admin endpoints.
func (in *Inherited) TakeListener(network, addr string) (net.Listener, error) {
	f := in.take(network, addr, 0)
	if f == nil {
		return nil, nil
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("inherited %s %s: %w", network, addr, err)
	}
	return ln, nil
}

// inheritTCP returns the inherited TCP listener of network and addr, nil
// when there is none.
func (in *Inherited) inheritTCP(network, addr string) (*net.TCPListener, error) {
	ln, err := in.TakeListener(network, addr)
	if ln == nil || err != nil {
		return nil, err
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("inherited %s %s: not a TCP listener", network, addr)
	}
	return tl, nil
}

// inheritUDP returns the inherited UDP socket of network, addr and
// index, nil when there is none.
func (in *Inherited) inheritUDP(network, addr string, index int) (*net.UDPConn, error) {
	f := in.take(network, addr, index)
	if f == nil {
		return nil, nil
	}
	defer f.Close()
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("inherited %s %s: %w", network, addr, err)
	}
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return nil, fmt.Errorf("inherited %s %s: not a UDP socket", network, addr)
	}
	return uc, nil
}

// fileOf returns a duplicate of the descriptor of c as a Socket.
func fileOf(c interface{ File() (*os.File, error) }, network, addr string, index int) (Socket, error) {
	f, err := c.File()
	if err != nil {
		return Socket{}, fmt.Errorf("duplicate %s %s: %w", network, addr, err)
	}
	return Socket{Network: network, Addr: addr, Index: index, File: f}, nil
}

// collect returns the sockets of fs, or, when one fails, closes those
// already duplicated and returns the error.
func collect(fs ...func() (Socket, error)) ([]Socket, error) {
	out := make([]Socket, 0, len(fs))
	for _, f := range fs {
		s, err := f()
		if err != nil {
			for _, o := range out {
				o.File.Close()
			}
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// bindUDP returns the UDP socket of addr inherited in in, or binds one;
// inherited tells which.
func bindUDP(in *Inherited, addr netip.AddrPort) (c *net.UDPConn, inherited bool, err error) {
	netw := network("udp", addr.Addr())
	if c, err := in.inheritUDP(netw, addr.String(), 0); c != nil || err != nil {
		return c, true, err
	}
	c, err = net.ListenUDP(netw, net.UDPAddrFromAddrPort(addr))
	return c, false, err
}
