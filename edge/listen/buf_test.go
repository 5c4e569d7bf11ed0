package listen

import (
	"bytes"
	"testing"
)

// TestBufSizes: a buffer is the smallest size that holds what it is for,
// and putBuf takes back every size.
func TestBufSizes(t *testing.T) {
	for _, tt := range []struct{ n, want int }{
		{0, 1024}, {40, 1024}, {1024, 1024}, {1025, 4098}, {4098, 4098}, {4099, maxFrame}, {maxFrame, maxFrame}, {maxFrame + 1, maxFrame + 1},
	} {
		b := getBufFor(tt.n)
		if len(*b) != tt.want {
			t.Errorf("getBufFor(%d): %d bytes, want %d", tt.n, len(*b), tt.want)
		}
		putBuf(b)
	}
	if b := getBuf(); len(*b) != maxFrame {
		t.Errorf("getBuf: %d bytes", len(*b))
	}
	q := bytes.Repeat([]byte{7}, 300)
	c := copyBuf(q)
	if len(*c) != 1024 || !bytes.Equal((*c)[:300], q) {
		t.Errorf("copyBuf: %d bytes, content kept %v", len(*c), bytes.Equal((*c)[:300], q))
	}
}

// TestInBufMoves: a reply the packer had to put elsewhere is copied after
// the offset, into a larger buffer when it does not fit the first.
func TestInBufMoves(t *testing.T) {
	small := getBufFor(100)
	in := (*small)[2:10]
	copy(in, "in place")
	if buf, b := inBuf(small, 2, in); buf != small || string(b) != "in place" {
		t.Errorf("a reply already in place moved: %q", b)
	}
	big := bytes.Repeat([]byte{1}, 3000)
	buf, b := inBuf(small, 2, big)
	if len(*buf) != 4098 || !bytes.Equal(b, big) || &b[0] != &(*buf)[2] {
		t.Errorf("a reply larger than its buffer: buffer of %d bytes, content kept %v", len(*buf), bytes.Equal(b, big))
	}
	putBuf(buf)
}
