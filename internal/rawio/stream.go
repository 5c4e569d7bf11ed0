package rawio

import "net"

// Stream returns c, whose Read and Write make raw system calls on Linux
// (see the package documentation); its other methods are c's. Elsewhere
// it returns c.
func Stream(c *net.TCPConn) net.Conn { return newStream(c, c, "tcp") }

// Datagram returns c, a connected UDP socket, whose Read and Write make
// raw system calls on Linux, a datagram each; its other methods are c's.
// Elsewhere it returns c.
func Datagram(c *net.UDPConn) net.Conn { return newStream(c, c, "udp") }
