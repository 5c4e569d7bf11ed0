package main

import (
	"errors"
	"io"

	"github.com/dnsedge/dnsedge/edge"
)

// stateWriter returns what writes srv's state (path health, cache
// entries, TLS and QUIC keys) for the new process of an upgrade; nil
// while the server has no state to hand over: the new process starts
// cold.
func stateWriter(*edge.Server) func(io.Writer) error { return nil }

// stateReader returns what reads the state the old process of an
// upgrade sent into srv, before it starts.
func stateReader(*edge.Server) func(io.Reader) error {
	return func(io.Reader) error { return errors.New("this build reads no state") }
}
