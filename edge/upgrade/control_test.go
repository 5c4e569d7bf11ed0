package upgrade

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestControl: dnsedge upgrade's request reaches the serving process,
// which answers the new pid or why it failed; a second process cannot
// take a socket that is served, and a stale socket file is replaced.
func TestControl(t *testing.T) {
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "ctl.sock")
	c, err := ListenControl(path, nil, func() int { return 4242 })
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		outcomes := []error{errors.New("bad config\nat line 3"), nil}
		for _, o := range outcomes {
			reply := <-c.Requests()
			reply <- o
		}
	}()
	if _, err := Ask(path, 5*time.Second); err == nil || err.Error() != "bad config at line 3" {
		t.Fatalf("failed upgrade: %v, want the reason on one line", err)
	}
	if pid, err := Ask(path, 5*time.Second); err != nil || pid != "4242" {
		t.Fatalf("upgrade: pid %q, %v", pid, err)
	}
	if _, err := ListenControl(path, nil, nil); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second listener on a served socket: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("Close removed the socket file the new process serves on: %v", err)
	}
	// The file is stale now: nobody listens.
	c2, err := ListenControl(path, nil, func() int { return 1 })
	if err != nil {
		t.Fatalf("stale socket file: %v", err)
	}
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("reload\n"))
	b := make([]byte, 100)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := conn.Read(b)
	conn.Close()
	if !strings.HasPrefix(string(b[:n]), "error unknown request") {
		t.Fatalf("unknown request answered %q", b[:n])
	}
	if err := c2.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("Remove left the socket file: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	err := (Config{Drain: -1, Watch: -time.Second}).Validate()
	if err == nil || !strings.Contains(err.Error(), "drain") || !strings.Contains(err.Error(), "watch") {
		t.Fatalf("negative durations: %v", err)
	}
	d := (Config{}).WithDefaults()
	if d.Drain != DefaultDrain || d.Watch != DefaultWatch || d.ReadyTimeout != DefaultReadyTimeout {
		t.Fatalf("defaults %+v", d)
	}
}
