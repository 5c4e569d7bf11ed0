package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// pair returns a connected TCP pair on loopback: the accepted side
// wrapped by Stream, and the dialled side.
func pair(t *testing.T) (net.Conn, *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	s := Stream(srv)
	t.Cleanup(func() { s.Close(); cl.Close() })
	return s, cl
}

func TestStream(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, s net.Conn, peer *net.TCPConn)
	}{
		{"read what the peer wrote, then EOF", func(t *testing.T, s net.Conn, peer *net.TCPConn) {
			peer.Write([]byte("hello"))
			peer.CloseWrite()
			got, err := io.ReadAll(s)
			if err != nil || string(got) != "hello" {
				t.Errorf("ReadAll = %q, %v; want hello, nil", got, err)
			}
		}},
		{"a write larger than the socket buffers", func(t *testing.T, s net.Conn, peer *net.TCPConn) {
			big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
			got := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(peer)
				got <- b
			}()
			s.SetWriteDeadline(time.Now().Add(20 * time.Second))
			n, err := s.Write(big)
			if n != len(big) || err != nil {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(big))
			}
			s.(interface{ CloseWrite() error }).CloseWrite()
			if b := <-got; !bytes.Equal(b, big) {
				t.Errorf("peer read %d bytes, not what was written", len(b))
			}
		}},
		{"a read deadline is a timeout", func(t *testing.T, s net.Conn, _ *net.TCPConn) {
			s.SetReadDeadline(time.Unix(1, 0))
			_, err := s.Read(make([]byte, 10))
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("Read = %v, want a timeout", err)
			}
		}},
		{"a write deadline is a timeout", func(t *testing.T, s net.Conn, _ *net.TCPConn) {
			s.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			big := make([]byte, 64<<20) // the peer reads nothing
			n, err := s.Write(big)
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || n >= len(big) {
				t.Errorf("Write = %d, %v; want a timeout before all is written", n, err)
			}
		}},
		{"close ends a waiting read", func(t *testing.T, s net.Conn, _ *net.TCPConn) {
			done := make(chan error, 1)
			go func() {
				_, err := s.Read(make([]byte, 10))
				done <- err
			}()
			time.Sleep(10 * time.Millisecond) // let the read wait; it ends either way
			s.Close()
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Read = %v, want net.ErrClosed", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Read still waiting after Close")
			}
		}},
		{"write to a peer that reset", func(t *testing.T, s net.Conn, peer *net.TCPConn) {
			peer.SetLinger(0)
			peer.Close()
			var err error
			deadline := time.Now().Add(10 * time.Second)
			for err == nil && time.Now().Before(deadline) {
				_, err = s.Write([]byte("x"))
			}
			var oe *net.OpError
			if !errors.As(err, &oe) || oe.Op != "write" {
				t.Errorf("Write = %v, want a write error", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, peer := pair(t)
			tt.run(t, s, peer)
		})
	}
}

// TestDatagram: a connected UDP socket's writes are datagrams, reads one
// datagram each (an empty one too, not EOF), a refused port is
// ECONNREFUSED, a deadline and Close end a waiting read, and the socket's
// own methods stay.
func TestDatagram(t *testing.T) {
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			ip := net.IPv4(127, 0, 0, 1)
			if network == "udp6" {
				ip = net.IPv6loopback
			}
			peer, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			defer peer.Close()
			c, err := net.DialUDP(network, nil, peer.LocalAddr().(*net.UDPAddr))
			if err != nil {
				t.Fatal(err)
			}
			d := Datagram(c)
			defer d.Close()
			if _, ok := d.(interface{ SetReadBuffer(int) error }); !ok {
				t.Fatal("Datagram hides the socket's own methods")
			}
			for _, msg := range []string{"one", "two"} {
				if n, err := d.Write([]byte(msg)); err != nil || n != len(msg) {
					t.Fatalf("Write(%q) = %d, %v", msg, n, err)
				}
			}
			buf := make([]byte, 16)
			for _, want := range []string{"one", "two"} {
				n, from, err := peer.ReadFromUDP(buf)
				if err != nil || string(buf[:n]) != want {
					t.Fatalf("peer read %q, %v; want %q", buf[:n], err, want)
				}
				if _, err := peer.WriteToUDP([]byte(want+"!"), from); err != nil {
					t.Fatal(err)
				}
			}
			peer.WriteToUDP(nil, c.LocalAddr().(*net.UDPAddr))
			for _, want := range []string{"one!", "two!", ""} {
				d.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := d.Read(buf)
				if err != nil || string(buf[:n]) != want {
					t.Fatalf("Read = %q, %v; want %q", buf[:n], err, want)
				}
			}
			d.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, err := d.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read past its deadline: %v", err)
			}
			// The peer goes: the next write draws an ICMP port
			// unreachable, which a read (or a later write) reports.
			peer.Close()
			d.SetReadDeadline(time.Now().Add(5 * time.Second))
			d.Write([]byte("anyone?"))
			if _, err := d.Read(buf); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("Read after the peer closed: %v, want ECONNREFUSED", err)
			}
			done := make(chan error, 1)
			d.SetReadDeadline(time.Time{})
			go func() { _, err := d.Read(buf); done <- err }()
			time.Sleep(10 * time.Millisecond)
			d.Close()
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("Read ended by Close: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not end a waiting Read")
			}
		})
	}
}
