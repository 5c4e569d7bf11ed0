// Package batch sizes the reads of a loop that takes datagrams with
// recvmmsg (golang.org/x/net's ReadBatch).
package batch

// Size is how many messages a read loop asks recvmmsg for. ReadBatch
// prepares a header, an address buffer and an iovec for every message it
// is given, whatever arrives: a loop that always asks for 32 while
// datagrams come one at a time pays for 31 headers it never uses. Size
// follows what arrives instead: it doubles after a read that filled the
// batch, up to Max, and otherwise goes to twice what the last read took
// (at least 2, so that a second datagram already waiting is taken with
// the first).
type Size struct {
	Max int
	cur int
}

// Next is the number of messages to ask for in the next read.
func (s *Size) Next() int {
	if s.cur == 0 {
		s.cur = min(2, s.Max)
	}
	return s.cur
}

// Took records that the last read, which asked for Next() messages,
// returned n.
func (s *Size) Took(n int) {
	if n >= s.cur {
		s.cur = min(2*s.cur, s.Max)
	} else {
		s.cur = min(max(2*n, 2), s.Max)
	}
}
