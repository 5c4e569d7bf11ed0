package listen

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUDPReadBuffer: every socket a UDP listener opens asks for
// udpReadBuffer of receive buffer, which Linux grants up to
// net.core.rmem_max and doubles; so does every socket it inherits, which
// the process that opened it may have left at the default.
func TestUDPReadBuffer(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Skip("no /proc/sys/net/core/rmem_max:", err)
	}
	rmemMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	want := 2 * min(udpReadBuffer, rmemMax)
	cfg := testConfig(t, fam4, &fakeHandler{t: t})
	cfg.Sockets = 2
	old, err := ListenUDP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkReadBuffers(t, "opened", old, want, rmemMax)

	// Handed over at the default size, as a process from before
	// udpReadBuffer leaves them.
	socks, err := old.Sockets()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range socks {
		if err := unix.SetsockoptInt(int(s.File.Fd()), unix.SOL_SOCKET, unix.SO_RCVBUF, 64<<10); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Inherited = NewInherited(socks)
	l, err := ListenUDP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if cfg.Inherited.Len() != 0 {
		t.Fatalf("%d sockets not taken over", cfg.Inherited.Len())
	}
	checkReadBuffers(t, "inherited", l, want, rmemMax)
}

// checkReadBuffers checks that every socket of l has at least want bytes
// of receive buffer.
func checkReadBuffers(t *testing.T, how string, l *UDP, want, rmemMax int) {
	t.Helper()
	for i, s := range l.socks {
		rc, err := s.conn.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		var gerr error
		rc.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
		if gerr != nil {
			t.Fatal(gerr)
		}
		if got < want {
			t.Errorf("%s socket %d: receive buffer %d bytes, want %d (4 MiB within rmem_max %d, doubled)", how, i, got, want, rmemMax)
		}
	}
}
