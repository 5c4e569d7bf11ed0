package listen

import (
	"testing"

	"github.com/miekg/dns"
	"golang.org/x/net/http2"
)

// sendBlock sends header block b on stream id, in one HEADERS frame or,
// when split, in a HEADERS and two CONTINUATION frames: the two ways a
// block is decoded (internal/h2's reader, the Framer's).
func (h *h2Raw) sendBlock(id uint32, b []byte, split bool) {
	h.t.Helper()
	if !split || len(b) < 3 {
		h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b, EndStream: true, EndHeaders: true})
		return
	}
	third := len(b) / 3
	h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b[:third], EndStream: true})
	h.fr.WriteContinuation(id, false, b[third:2*third])
	h.fr.WriteContinuation(id, true, b[2*third:])
}

// TestDoHH2MalformedHeaders sends header blocks that RFC 9113 §8.2 and
// §8.3 call malformed, each whole in one frame and split over three:
// the stream is reset with PROTOCOL_ERROR either way, and the
// connection goes on to answer the next request, its HPACK state intact.
func TestDoHH2MalformedHeaders(t *testing.T) {
	t.Parallel()
	l := startDoH(t, dohTestConfig(t, fam4, &fakeHandler{t: t, serve: answerA}, testTLS(t)))
	path := "/dns-query?dns=" + dohB64(t, query("example.org.", dns.TypeA))
	tests := []struct {
		name   string
		fields []string // after :method, :scheme, :authority and :path
	}{
		{"upper-case name", []string{"Accept", dnsMessageType}},
		{"name not a token", []string{"acc ept", dnsMessageType}},
		{"value with NUL", []string{"accept", "a\x00b"}},
		{"pseudo-header after a regular field", []string{"accept", dnsMessageType, ":protocol", "x"}},
		{"unknown pseudo-header", []string{":flavour", "x"}},
		{"repeated pseudo-header", []string{":path", "/other"}},
		{"response pseudo-header in a request", []string{":status", "200"}},
		{"connection-specific field", []string{"connection", "keep-alive"}},
		{"te other than trailers", []string{"te", "gzip"}},
	}
	for _, split := range []bool{false, true} {
		c := dialH2Raw(t, l, false)
		id := uint32(1)
		for _, tt := range tests {
			// A valid request first: its fields enter the HPACK dynamic
			// table, which the bad block and the next good one refer to.
			c.sendBlock(id, c.block("GET", path, "accept", dnsMessageType), split)
			c.sendBlock(id+2, c.block("GET", path, tt.fields...), split)
			c.sendBlock(id+4, c.block("GET", path, "accept", dnsMessageType), !split)
			got := c.collect(func(http2.Frame) {}, id, id+2, id+4)
			if got[id].status != "200" || got[id+4].status != "200" {
				t.Errorf("split %v, %s: good requests around it got %+v and %+v", split, tt.name, got[id], got[id+4])
			}
			if r := got[id+2]; !r.resetB || r.reset != http2.ErrCodeProtocol {
				t.Errorf("split %v, %s: %+v, want RST_STREAM PROTOCOL_ERROR", split, tt.name, r)
			}
			id += 6
		}
	}
}
