package listen

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/miekg/dns"
)

// FuzzDoQStream feeds byte streams, ended by a FIN, through the framing
// check of a DoQ stream (readDoQQuery): it must not panic, must ask for
// no more memory than the declared length, and must classify every input
// as exactly what RFC 9250 §4.2 makes of it: one message with ID 0, or a
// protocol error.
func FuzzDoQStream(f *testing.F) {
	q := query("example.org.", dns.TypeA)
	q.Id = 0
	wire, _ := q.Pack()
	framed := frameOf(wire)
	for _, s := range [][]byte{
		framed, nil, {0}, {0, 0}, framed[:10], append(append([]byte{}, framed...), 0),
		append(append([]byte{}, framed...), framed...), {0, 1, 0}, {0, 2, 0x12, 0x34}, {0xff, 0xff},
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, in []byte, oneByte bool) {
		var r io.Reader = bytes.NewReader(in)
		if oneByte {
			r = iotest.OneByteReader(r)
		}
		allocs := 0
		msg, err := readDoQQuery(r, func(n int) []byte {
			allocs++
			if n < 1 || n > dns.MaxMsgSize || len(in) < 2 || n != int(in[0])<<8|int(in[1]) {
				t.Fatalf("asked for %d bytes", n)
			}
			return make([]byte, n)
		})
		if allocs > 1 {
			t.Fatalf("%d allocations", allocs)
		}
		want := doqClassify(in)
		var fe doqFrameError
		switch {
		case want == 0 && err != nil:
			t.Fatalf("valid stream rejected: %v", err)
		case want == 0 && !bytes.Equal(msg, in[2:]):
			t.Fatalf("message %x, want %x", msg, in[2:])
		case want != 0 && (!errors.As(err, &fe) || fe != want):
			t.Fatalf("got %v, %v; want %v", msg, err, want)
		}
	})
}

// doqClassify is what RFC 9250 §4.2 makes of a whole stream: 0 for one
// well-framed message with ID 0, otherwise the protocol error.
func doqClassify(in []byte) doqFrameError {
	if len(in) < 2 {
		return errDoQTruncated
	}
	n := int(in[0])<<8 | int(in[1])
	switch {
	case n == 0:
		return errDoQEmpty
	case len(in)-2 < n:
		return errDoQTruncated
	case n >= 2 && (in[2] != 0 || in[3] != 0):
		return errDoQMessageID
	case len(in)-2 > n:
		return errDoQTrailing
	}
	return 0
}

// TestReadDoQQueryErrors checks that reader errors other than the end of
// the stream are passed on, not taken for protocol errors.
func TestReadDoQQueryErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("stream reset")
	for _, tt := range []struct {
		name string
		r    io.Reader
	}{
		{"before the length", iotest.ErrReader(boom)},
		{"in the message", io.MultiReader(bytes.NewReader([]byte{0, 12, 0, 0}), iotest.ErrReader(boom))},
		{"waiting for FIN", io.MultiReader(bytes.NewReader([]byte{0, 2, 0, 0}), iotest.ErrReader(boom))},
	} {
		_, err := readDoQQuery(tt.r, func(n int) []byte { return make([]byte, n) })
		if !errors.Is(err, boom) {
			t.Errorf("%s: got %v, want the reader's error", tt.name, err)
		}
	}
}
