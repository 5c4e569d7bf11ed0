package h2

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// readBlock reads block as one HEADERS frame, decoded by headerReader
// (own) or by the Framer (ReadMetaHeaders), each with a fresh decoder
// and a header list limit of max.
func readBlock(t *testing.T, block []byte, max uint32, own bool) (headerBlock, error) {
	t.Helper()
	var wire bytes.Buffer
	if err := http2.NewFramer(&wire, nil).WriteHeaders(http2.HeadersFrameParam{
		StreamID: 1, BlockFragment: block, EndStream: true, EndHeaders: true,
	}); err != nil {
		t.Skip(err) // too large for a frame
	}
	fr := http2.NewFramer(nil, &wire)
	fr.MaxHeaderListSize = max
	dec := hpack.NewDecoder(4096, nil)
	if own {
		var h headerReader
		h.init(dec, max)
		f, err := fr.ReadFrame()
		if err != nil {
			return headerBlock{}, err
		}
		return h.decode(f.(*http2.HeadersFrame))
	}
	fr.ReadMetaHeaders = dec
	f, err := fr.ReadFrame()
	if err != nil {
		return headerBlock{}, err
	}
	mh := f.(*http2.MetaHeadersFrame)
	return headerBlock{id: mh.StreamID, ended: mh.StreamEnded(), fields: mh.Fields, truncated: mh.Truncated}, nil
}

// errClass is how the connection treats err: 0 none, 1 the stream is
// reset, 2 the connection ends.
func errClass(err error) int {
	var se http2.StreamError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &se):
		return 1
	}
	return 2
}

func encodeBlock(fields ...string) []byte {
	var b bytes.Buffer
	e := hpack.NewEncoder(&b)
	for i := 0; i+1 < len(fields); i += 2 {
		e.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return b.Bytes()
}

// FuzzHeaderReader holds headerReader to the Framer's own decoding of
// the same header block: the same fields, truncation and kind of error.
func FuzzHeaderReader(f *testing.F) {
	req := []string{":method", "GET", ":scheme", "https", ":authority", "a", ":path", "/dns-query?dns=AAAB"}
	f.Add(encodeBlock(req...), uint32(1024))
	f.Add(encodeBlock(append(req, "accept", "application/dns-message", "user-agent", "x")...), uint32(100))
	f.Add(encodeBlock(append(req, "Accept", "x")...), uint32(1024))
	f.Add(encodeBlock(append(req, ":path", "/")...), uint32(1024))
	f.Add(encodeBlock("accept", "x", ":method", "GET"), uint32(1024))
	f.Add([]byte{0x3f, 0xe1, 0x1f}, uint32(1024)) // a table size update
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, uint32(1024))
	f.Fuzz(func(t *testing.T, block []byte, max uint32) {
		max = max%8192 + 1
		own, ownErr := readBlock(t, block, max, true)
		want, wantErr := readBlock(t, block, max, false)
		if errClass(ownErr) != errClass(wantErr) {
			t.Fatalf("error %v, the Framer's %v", ownErr, wantErr)
		}
		if ownErr != nil {
			return
		}
		if !slices.Equal(own.fields, want.fields) || own.truncated != want.truncated || own.ended != want.ended || own.id != want.id {
			t.Fatalf("decoded %+v, the Framer %+v", own, want)
		}
	})
}
