//go:build linux

package rawio

import (
	"net"
	"testing"

	"golang.org/x/net/ipv4"
)

// TestNoAllocs: a read or a write, batched or not, and a ReadLoop call
// allocate nothing: the functions the RawConn calls are bound once per
// socket.
func TestNoAllocs(t *testing.T) {
	a, b := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
	ba, err := NewBatcher(a, false)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := NewBatcher(b, false)
	if err != nil {
		t.Fatal(err)
	}
	out := []ipv4.Message{{Buffers: [][]byte{[]byte("ping")}, Addr: b.LocalAddr()}}
	in := []ipv4.Message{{Buffers: [][]byte{make([]byte, 64)}}}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := ba.WriteBatch(out, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := bb.ReadBatch(in, 0); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("a batched write and read allocate %v times", n)
	}
	once := func(int) int { return 0 } // one batch per ReadLoop call
	if n := testing.AllocsPerRun(100, func() {
		if _, err := ba.WriteBatch(out, 0); err != nil {
			t.Fatal(err)
		}
		if err := ReadLoop(bb, in, 0, 1, once); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("a batched write and a ReadLoop of one batch allocate %v times", n)
	}

	c, err := net.DialUDP("udp4", nil, a.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := Datagram(c)
	ping, buf := []byte("ping"), make([]byte, 64)
	back := []ipv4.Message{{Buffers: [][]byte{ping}, Addr: c.LocalAddr()}}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := d.Write(ping); err != nil {
			t.Fatal(err)
		}
		if _, err := ba.ReadBatch(in, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := ba.WriteBatch(back, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Read(buf); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("a datagram write and read allocate %v times", n)
	}
}
