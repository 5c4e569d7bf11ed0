package transport

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// TestReadFrame covers the DoQ reply framing (RFC 9250 §4.2).
func TestReadFrame(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	cases := []struct {
		name      string
		r         io.Reader
		want      string
		malformed bool
		err       error
	}{
		{name: "one message", r: bytes.NewReader([]byte{0, 3, 'a', 'b', 'c'}), want: "abc"},
		{name: "trailing bytes ignored", r: bytes.NewReader([]byte{0, 1, 'a', 'z', 'z'}), want: "a"},
		{name: "byte at a time", r: iotest.OneByteReader(bytes.NewReader([]byte{0, 2, 'h', 'i'})), want: "hi"},
		{name: "empty stream", r: bytes.NewReader(nil), malformed: true},
		{name: "half a prefix", r: bytes.NewReader([]byte{0}), malformed: true},
		{name: "zero length", r: bytes.NewReader([]byte{0, 0}), malformed: true},
		{name: "short body", r: bytes.NewReader([]byte{0, 5, 'a'}), malformed: true},
		{name: "read error", r: iotest.ErrReader(boom), err: boom},
		{name: "error inside body", r: io.MultiReader(bytes.NewReader([]byte{0, 4, 'a'}), iotest.ErrReader(boom)), err: boom},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			buf := make([]byte, maxMsgSize)
			n, err := readFrame(tc.r, buf)
			switch {
			case tc.malformed:
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
			case tc.err != nil:
				if !errors.Is(err, tc.err) || errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
			case err != nil:
				t.Fatal(err)
			case string(buf[:n]) != tc.want:
				t.Fatalf("got %q, want %q", buf[:n], tc.want)
			}
		})
	}
}

// FuzzReadFrame: no input panics readFrame, and a frame it accepts is the
// declared number of bytes right after the prefix.
func FuzzReadFrame(f *testing.F) {
	for _, s := range [][]byte{{0, 3, 'a', 'b', 'c'}, {0, 0}, {0xff, 0xff, 1}, {}, {0}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		buf := make([]byte, maxMsgSize)
		n, err := readFrame(bytes.NewReader(in), buf)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if n == 0 || n != int(in[0])<<8|int(in[1]) || n > len(in)-2 || !bytes.Equal(buf[:n], in[2:2+n]) {
			t.Fatalf("%x: frame of %d bytes", in, n)
		}
	})
}
