package upgrade

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/dnsedge/dnsedge/edge/listen"
)

// The environment of a new process.
const (
	EnvFDs = "DNSEDGE_UPGRADE_FDS"
	EnvCtl = "DNSEDGE_UPGRADE_CTL"
	// EnvQUICMarker is the QUIC connection ID marker of the new
	// process (listen.QUICRouting), a decimal byte.
	EnvQUICMarker = "DNSEDGE_UPGRADE_QUIC_MARKER"
)

// firstFD is the descriptor of os/exec's first ExtraFiles entry.
const firstFD = 3

// encodeFDs returns the value of EnvFDs for socks passed as ExtraFiles
// from the first on.
func encodeFDs(socks []listen.Socket) string {
	parts := make([]string, len(socks))
	for i, s := range socks {
		parts[i] = strconv.Itoa(firstFD+i) + "=" + s.Key()
	}
	return strings.Join(parts, ";")
}

// fdEntry is one entry of EnvFDs: a descriptor and its socket's key.
type fdEntry struct {
	fd   int
	sock listen.Socket // without File
}

// decodeFDs parses a value of EnvFDs.
func decodeFDs(v string) ([]fdEntry, error) {
	if v == "" {
		return nil, nil
	}
	var out []fdEntry
	for _, part := range strings.Split(v, ";") {
		fd, key, ok := strings.Cut(part, "=")
		n, err := strconv.Atoi(fd)
		if !ok || err != nil || n < firstFD {
			return nil, fmt.Errorf("%s: entry %q is not fd=key", EnvFDs, part)
		}
		network, addr, index, err := listen.ParseSocketKey(key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvFDs, err)
		}
		out = append(out, fdEntry{fd: n, sock: listen.Socket{Network: network, Addr: addr, Index: index}})
	}
	return out, nil
}

// fromEnv returns the inherited sockets and the control socket's file
// named by the environment, and clears it so that nothing started from
// this process reads it; ok is false when this process is no upgrade.
func fromEnv() (socks []listen.Socket, ctl *os.File, ok bool, err error) {
	c, fds := os.Getenv(EnvCtl), os.Getenv(EnvFDs)
	os.Unsetenv(EnvCtl)
	os.Unsetenv(EnvFDs)
	if c == "" {
		return nil, nil, false, nil
	}
	n, err := strconv.Atoi(c)
	if err != nil || n < firstFD {
		return nil, nil, false, errors.New(EnvCtl + " is not a descriptor number")
	}
	entries, err := decodeFDs(fds)
	if err != nil {
		return nil, nil, false, err
	}
	for _, e := range entries {
		e.sock.File = os.NewFile(uintptr(e.fd), e.sock.Key())
		socks = append(socks, e.sock)
	}
	return socks, os.NewFile(uintptr(n), "upgrade control"), true, nil
}
