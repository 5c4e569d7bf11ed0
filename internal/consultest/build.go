// Package consultest runs a real Consul agent for tests: the consul
// binary is built once per machine from Consul's module and kept in the
// Go build cache directory, and each test starts its own `consul agent
// -dev` on loopback with every port moved to a free ephemeral one.
//
// A test that cannot get a binary (no Go toolchain, no module proxy) is
// skipped, unless the environment variable E2E_REQUIRED is 1: then it
// fails.
package consultest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Version is the Consul release the tests run against, and APIVersion the
// version of its api module it is built with: the one Consul's go.mod
// names does not compile with it.
const (
	Version    = "v1.22.7"
	APIVersion = "v1.34.1"
)

// buildTimeout bounds a cold build (about 4 minutes on 2 cores).
const buildTimeout = 12 * time.Minute

// goMod is the throwaway module Consul is built through: `go install
// github.com/hashicorp/consul@...` cannot be used, since Consul's go.mod
// has exclude and replace lines, which only apply in the main module.
const goMod = `module consulbuild

go 1.25.9

exclude (
	github.com/hashicorp/go-msgpack v1.1.5
	github.com/hashicorp/go-msgpack v1.1.6
)
`

// Binary returns the path of the consul binary, building it when the
// cache has none. Parallel test processes build it once: the build runs
// under an exclusive lock on a file beside the binary, and the binary is
// renamed into place only when complete. A test that cannot have it is
// skipped, or failed when E2E_REQUIRED=1.
func Binary(t testing.TB) string {
	t.Helper()
	path, err := binary(t)
	if err != nil {
		unavailable(t, err)
	}
	return path
}

func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("E2E_REQUIRED") == "1" {
		t.Fatalf("consul agent is required (E2E_REQUIRED=1): %v", err)
	}
	t.Skipf("consul agent not available: %v", err)
}

// CacheDir is the directory the binary of Version is kept in: under the
// Go build cache directory (`go env GOCACHE`), which `go clean -cache`
// empties and the Go command's own trimming leaves alone.
func CacheDir() (string, error) {
	out, err := exec.Command(goCommand(), "env", "GOCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOCACHE: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" || dir == "off" {
		return "", errors.New("the Go build cache is off")
	}
	return filepath.Join(dir, "dnsedge-consul", Version), nil
}

func binary(t testing.TB) (string, error) {
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "consul")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // built by another process while we waited
	}
	t.Logf("building consul %s into %s (once per machine; a few minutes)", Version, dir)
	start := time.Now()
	if err := build(dir, bin); err != nil {
		return "", err
	}
	t.Logf("built consul %s in %s", Version, time.Since(start).Round(time.Second))
	return bin, nil
}

// build builds consul into bin through a throwaway module in a temporary
// directory under dir.
func build(dir, bin string) error {
	work, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte(goMod), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, goCommand(), args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod -buildvcs=false")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, tail(string(out), 2000))
		}
		return nil
	}
	if err := run("get", "github.com/hashicorp/consul@"+Version, "github.com/hashicorp/consul/api@"+APIVersion); err != nil {
		return err
	}
	tmp := filepath.Join(work, "consul")
	if err := run("build", "-trimpath", "-ldflags=-s -w", "-o", tmp, "github.com/hashicorp/consul"); err != nil {
		return err
	}
	return os.Rename(tmp, bin)
}

// goCommand is the go command of the toolchain running the tests when
// it can be found, else "go" from PATH.
func goCommand() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
