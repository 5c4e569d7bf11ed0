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
// net.core.rmem_max and doubles.
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
	cfg := testConfig(t, fam4, &fakeHandler{t: t})
	cfg.Sockets = 2
	l, err := ListenUDP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	want := 2 * min(udpReadBuffer, rmemMax)
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
			t.Errorf("socket %d: receive buffer %d bytes, want %d (4 MiB within rmem_max %d, doubled)", i, got, want, rmemMax)
		}
	}
}
