package listen

import (
	"bufio"
	"errors"
	"io"
)

// stage is what a connection is waiting for when a read may block.
type stage uint8

const (
	stageIdle    stage = iota // the first byte of the next message
	stageMessage              // the rest of a message that has begun
)

// readFrame reads one length-prefixed message (RFC 1035 §4.2.2) from br
// into buf, which holds at least 65535 bytes, and returns its length.
// Before a read that may block it calls arm, when not nil, with the stage:
// once with stageIdle when nothing is buffered, and at most once with
// stageMessage per message, so a message has one deadline from its first
// byte. started reports whether any byte of the message had arrived when
// err happened; a clean end of stream is io.EOF with started false.
func readFrame(br *bufio.Reader, buf []byte, arm func(stage)) (n int, started bool, err error) {
	if arm != nil && br.Buffered() == 0 {
		arm(stageIdle)
	}
	hi, err := br.ReadByte()
	if err != nil {
		return 0, false, err
	}
	armed := false
	need := func(k int) {
		if arm != nil && !armed && br.Buffered() < k {
			arm(stageMessage)
			armed = true
		}
	}
	need(1)
	lo, err := br.ReadByte()
	if err != nil {
		return 0, true, unexpected(err)
	}
	n = int(hi)<<8 | int(lo)
	need(n)
	if _, err := io.ReadFull(br, buf[:n]); err != nil {
		return 0, true, unexpected(err)
	}
	return n, true, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
