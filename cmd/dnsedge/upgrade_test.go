package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/transport/transporttest"
)

var upgradedLine = regexp.MustCompile(`upgraded: new process (\d+) serves`)

// TestFailedUpgrades: an upgrade to a configuration that does not load
// fails, is reported by dnsedge upgrade, and changes nothing; a new
// process killed within the watch window makes the old one take its
// sockets back and serve on. Under a bounded load no query is lost but
// those the killed process held. The service manager (NOTIFY_SOCKET) is
// told the serving process's pid each time.
func TestFailedUpgrades(t *testing.T) {
	up := transporttest.StartFault(t, zone)
	dir := t.TempDir()
	bin := filepath.Join(dir, "dnsedge")
	buildVersioned(t, bin, "upgrade-test-1")
	port := freePortBoth(t)
	sock := tempSocket(t)
	good := upgradeConfig(port, 2, up.AddrV4().String(), sock, "")
	path := writeFile(t, "dnsedge.yaml", good)
	// A service manager's notification socket, as systemd gives.
	notify := listenNotify(t)
	p, _ := startBin(t, bin, path, "NOTIFY_SOCKET="+notify.path)
	oldPid := strconv.Itoa(p.cmd.Process.Pid)
	waitFor(t, "READY=1 and the main pid notified", func() bool { return notify.has("READY=1") && notify.last() == oldPid })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if v := versionBind(addr, "udp"); v != "upgrade-test-1" {
		t.Fatalf("version.bind %q before the upgrade", v)
	}
	const udpWorkers, tcpWorkers = 4, 2
	l := startLoad(addr, udpWorkers, tcpWorkers, 100, []string{"www.test.example.", "new.test.example."})
	defer func() {
		if l != nil {
			l.finish()
		}
	}()
	time.Sleep(500 * time.Millisecond)

	// A configuration that does not load.
	if err := os.WriteFile(path, []byte(good+"bogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runUpgrade(t, bin, sock)
	if code != 1 || !strings.Contains(out, `unknown key "bogus"`) {
		t.Fatalf("upgrade to a bad configuration: exit %d, output:\n%s", code, out)
	}
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, network := range []string{"udp", "tcp"} {
		if v := versionBind(addr, network); v != "upgrade-test-1" {
			t.Fatalf("version.bind over %s %q after a failed upgrade", network, v)
		}
	}

	// A new process that dies within the watch window.
	buildVersioned(t, bin, "upgrade-test-2")
	code, out = runUpgrade(t, bin, sock)
	m := upgradedLine.FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("upgrade: exit %d, output:\n%s\nlog:\n%s", code, out, p.stderr.String())
	}
	pid, _ := strconv.Atoi(m[1])
	waitFor(t, "the new process notified as the main one", func() bool { return notify.last() == m[1] })
	start := time.Now()
	for versionBind(addr, "tcp") != "upgrade-test-2" {
		if time.Since(start) > time.Second {
			t.Fatalf("new connections not on the new process within 1s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	lostBefore := l.lost.Load()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	for versionBind(addr, "tcp") != "upgrade-test-1" || versionBind(addr, "udp") != "upgrade-test-1" {
		if time.Since(start) > 3*time.Second {
			t.Fatalf("the old process did not take its sockets back within 3s; log:\n%s", p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitFor(t, "the old process notified as the main one again", func() bool { return notify.last() == oldPid })
	if !strings.Contains(p.stderr.String(), "taking the sockets back") {
		t.Errorf("take-back not logged:\n%s", p.stderr.String())
	}
	time.Sleep(time.Second)
	l.finish()
	t.Log(l)
	// At most one query per worker was in flight on the killed process;
	// nothing else may be lost.
	if lostBefore != 0 || l.lost.Load() > udpWorkers+tcpWorkers {
		t.Fatalf("lost %d before the kill, %d in all (at most %d in flight on the killed process): %s",
			lostBefore, l.lost.Load(), udpWorkers+tcpWorkers, l)
	}
	if l.answered.Load() < 500 {
		t.Fatalf("too little load to tell: %s", l)
	}
	l = nil
	if err := p.cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("old process gone: %v", err)
	}
}

// TestUpgradeAsPID1: as PID 1 of its own PID namespace (a container's
// entrypoint), dnsedge serve stays a thin parent: an upgrade replaces the
// server under it, the old server's exit does not end the namespace, and
// SIGTERM to PID 1 reaches the serving process and ends both with its
// status.
func TestUpgradeAsPID1(t *testing.T) {
	unshare := tool(t, "unshare")
	if err := exec.Command(unshare, "-Urpf", "--mount-proc", "true").Run(); err != nil {
		// Not a missing program but a kernel or container policy
		// (unprivileged user namespaces off): skipped even with
		// E2E_REQUIRED.
		t.Skipf("no unprivileged PID namespace here: %v", err)
	}
	up := transporttest.StartFault(t, zone)
	dir := t.TempDir()
	bin := filepath.Join(dir, "dnsedge")
	buildVersioned(t, bin, "pid1-test-1")
	port := freePortBoth(t)
	sock := tempSocket(t)
	config := strings.Replace(upgradeConfig(port, 1, up.AddrV4().String(), sock, ""), "watch: 20s", "watch: 2s", 1)
	config = strings.Replace(config, "drain: 5s", "drain: 1s", 1)
	path := writeFile(t, "dnsedge.yaml", config)
	cmd := exec.Command(unshare, "-Urpf", "--mount-proc", bin, "serve", "-config", path)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+t.TempDir(), "STATE_DIRECTORY=")
	// A pipe of our own: Wait must not wait for the processes in the
	// namespace to close it.
	var stderr syncBuf
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	go io.Copy(&stderr, r)
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	init := 0
	t.Cleanup(func() {
		if init > 0 {
			syscall.Kill(init, syscall.SIGKILL) // ends the namespace
		}
		cmd.Process.Kill()
		<-exited
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(t, "dnsedge serving as PID 1's child", func() bool { return versionBind(addr, "udp") == "pid1-test-1" })
	// PID 1 of the namespace is unshare's child.
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	init, err = strconv.Atoi(strings.TrimSpace(string(children)))
	if err != nil {
		t.Fatalf("unshare's children: %q", children)
	}
	buildVersioned(t, bin, "pid1-test-2")
	if code, out := runUpgrade(t, bin, sock); code != 0 {
		t.Fatalf("upgrade: exit %d\n%s\nlog:\n%s", code, out, stderr.String())
	}
	if v := versionBind(addr, "tcp"); v != "pid1-test-2" {
		t.Fatalf("version.bind %q after the upgrade", v)
	}
	waitFor(t, "the old server gone", func() bool {
		return strings.Contains(stderr.String(), "watch window over")
	})
	time.Sleep(time.Second)
	if err := syscall.Kill(init, 0); err != nil {
		t.Fatalf("PID 1 gone after the old server exited: %v", err)
	}
	if v := versionBind(addr, "udp"); v != "pid1-test-2" {
		t.Fatalf("version.bind %q after the old server exited", v)
	}
	if err := syscall.Kill(init, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", waitErr, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("PID 1 did not exit after SIGTERM:\n%s", stderr.String())
	}
}
