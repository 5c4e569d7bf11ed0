package main

import (
	"io"

	"github.com/dnsedge/dnsedge/edge"
)

// stateWriter returns what writes srv's state (path health, cache
// entries, TLS ticket keys, QUIC keys) for the new process of an upgrade,
// when it asks: before it starts serving.
func stateWriter(srv *edge.Server) func(io.Writer) error {
	return func(w io.Writer) error { return srv.WriteState(w, edge.StateOptions{}) }
}

// stateReader returns what reads the state the old process of an
// upgrade sent into srv, before it starts. A state it cannot read leaves
// srv cold.
func stateReader(srv *edge.Server) func(io.Reader) error { return srv.ReadState }
