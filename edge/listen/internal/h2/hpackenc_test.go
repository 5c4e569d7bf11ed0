package h2

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// peer decodes what a headerEncoder writes the way a client does, with
// golang.org/x/net's decoder under the table size the client allows.
type peer struct {
	dec *hpack.Decoder
	got []hpack.HeaderField
}

func newPeer() *peer {
	p := &peer{}
	p.dec = hpack.NewDecoder(defaultTableSize, func(f hpack.HeaderField) { p.got = append(p.got, f) })
	return p
}

// setLimit is the client sending SETTINGS_HEADER_TABLE_SIZE v.
func (p *peer) setLimit(e *headerEncoder, v uint32) {
	p.dec.SetAllowedMaxDynamicTableSize(v)
	e.setPeerLimit(v)
}

// block decodes one header block.
func (p *peer) block(b []byte) ([]hpack.HeaderField, error) {
	p.got = p.got[:0]
	if _, err := p.dec.Write(b); err != nil {
		return nil, err
	}
	if err := p.dec.Close(); err != nil {
		return nil, err
	}
	return slices.Clone(p.got), nil
}

type reply struct {
	status int
	fields []responseField
}

func (r reply) encode(e *headerEncoder) []byte {
	b := e.begin(nil)
	b = e.status(b, r.status)
	for _, f := range r.fields {
		b = e.field(b, f.name, f.value, f.shared)
	}
	return b
}

func (r reply) want() []hpack.HeaderField {
	out := []hpack.HeaderField{{Name: ":status", Value: fmt.Sprint(r.status)}}
	for _, f := range r.fields {
		out = append(out, hpack.HeaderField{Name: f.name, Value: f.value})
	}
	return out
}

func TestHeaderEncoder(t *testing.T) {
	dnsType := responseField{"content-type", "application/dns-message", true}
	cors := responseField{"access-control-allow-origin", "*", true}
	alt := responseField{"alt-svc", `h3=":8443"; ma=86400`, true}
	length := func(n int) responseField { return responseField{"content-length", fmt.Sprint(n), false} }
	trace := responseField{"x-dnsedge-trace-id", "4bf92f3577b34da6a3ce929d0e0e4736", false}
	long := responseField{"x-long", strings.Repeat("v", 300), false}
	tests := []struct {
		name    string
		limits  map[int]uint32 // the client's SETTINGS_HEADER_TABLE_SIZE before reply i
		replies []reply
		// maxLen[i], when set, bounds the size of reply i's block.
		maxLen map[int]int
	}{
		{
			name: "shared fields become one byte each",
			replies: []reply{
				{200, []responseField{cors, alt, dnsType, {"cache-control", "max-age=300", false}, length(45)}},
				{200, []responseField{cors, alt, dnsType, {"cache-control", "max-age=299", false}, length(61)}},
				{200, []responseField{cors, alt, dnsType, {"cache-control", "max-age=299", false}, length(61)}},
			},
			// status, 3 indices, then cache-control and content-length
			// each a 2-byte name index, a length and the value.
			maxLen: map[int]int{1: 1 + 3 + 14 + 5, 2: 1 + 3 + 14 + 5},
		},
		{
			name: "every status code",
			replies: []reply{
				{200, nil}, {204, nil}, {304, nil}, {400, nil}, {404, nil}, {500, nil},
				{405, []responseField{{"allow", "GET, POST, OPTIONS", false}}},
				{413, nil}, {415, nil}, {503, []responseField{{"retry-after", "1", false}}},
			},
		},
		{
			name: "names outside the static table and long values",
			replies: []reply{
				{200, []responseField{trace, long, {"x-content-type-options", "nosniff", true}}},
				{200, []responseField{trace, long, {"x-content-type-options", "nosniff", true}}},
			},
		},
		{
			name:   "a client that allows no dynamic table",
			limits: map[int]uint32{0: 0},
			replies: []reply{
				{200, []responseField{dnsType, length(45)}},
				{200, []responseField{dnsType, length(45)}},
			},
		},
		{
			name:   "a client that shrinks the table between replies",
			limits: map[int]uint32{2: 80, 4: 4096, 5: 65536},
			replies: []reply{
				{200, []responseField{cors, dnsType, length(1)}},
				{200, []responseField{cors, dnsType, length(2)}},
				{200, []responseField{cors, dnsType, length(3)}}, // only cors fits in 80
				{200, []responseField{dnsType, cors, length(4)}},
				{200, []responseField{dnsType, cors, length(5)}},
				{200, []responseField{dnsType, cors, alt, length(6)}},
				{200, []responseField{alt, cors, dnsType, length(7)}},
			},
		},
		{
			name: "more shared fields than the encoder keeps",
			replies: func() []reply {
				var fs []responseField
				for i := range maxShared + 3 {
					fs = append(fs, responseField{fmt.Sprintf("x-s%d", i), "v", true})
				}
				rev := slices.Clone(fs)
				slices.Reverse(rev)
				return []reply{{200, fs}, {200, fs}, {200, rev}}
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, p := newHeaderEncoder(), newPeer()
			for i, r := range tt.replies {
				if v, ok := tt.limits[i]; ok {
					p.setLimit(&e, v)
				}
				b := r.encode(&e)
				got, err := p.block(b)
				if err != nil {
					t.Fatalf("reply %d: %v (block %x)", i, err, b)
				}
				if !slices.Equal(got, r.want()) {
					t.Fatalf("reply %d: decoded %v, want %v", i, got, r.want())
				}
				if m, ok := tt.maxLen[i]; ok && len(b) > m {
					t.Errorf("reply %d: %d bytes, want at most %d: %x", i, len(b), m, b)
				}
			}
		})
	}
}

// FuzzHeaderEncoder encodes replies built from the input, with the
// client's table size changing between them, and holds what
// golang.org/x/net's decoder reads back to what was encoded.
func FuzzHeaderEncoder(f *testing.F) {
	f.Add([]byte("\x01content-type\x00application/dns-message\x00\x02content-length\x0045\x00"), uint32(4096), uint16(2))
	f.Add([]byte("\x01alt-svc\x00h3\x00\x01x-a\x00b\x00"), uint32(40), uint16(1))
	f.Fuzz(func(t *testing.T, spec []byte, limit uint32, changeAt uint16) {
		var fields []responseField
		for rest := spec; len(rest) > 1 && len(fields) < MaxHeaders; {
			shared := rest[0]&1 == 1
			parts := bytes.SplitN(rest[1:], []byte{0}, 3)
			if len(parts) < 2 || len(parts[0]) == 0 {
				break
			}
			fields = append(fields, responseField{strings.ToLower(string(parts[0])), string(parts[1]), shared})
			if len(parts) < 3 {
				break
			}
			rest = parts[2]
		}
		e, p := newHeaderEncoder(), newPeer()
		for i := range 6 {
			if i == int(changeAt%6) {
				p.setLimit(&e, limit)
			}
			r := reply{status: 200 + i, fields: fields}
			got, err := p.block(r.encode(&e))
			if err != nil {
				t.Fatalf("reply %d: %v", i, err)
			}
			if !slices.Equal(got, r.want()) {
				t.Fatalf("reply %d: decoded %v, want %v", i, got, r.want())
			}
		}
	})
}
