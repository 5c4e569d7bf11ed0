package edge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net/netip"
	"time"

	"github.com/dnsedge/dnsedge/edge/cache"
	"github.com/dnsedge/dnsedge/edge/listen"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	edgetls "github.com/dnsedge/dnsedge/tls"
	"github.com/dnsedge/dnsedge/transport"
)

// The state stream:
//
//	magic "dnsedge\x00state\x00\x00" (16 bytes)
//	version  uint16, big endian (stateVersion)
//	sections, each:
//	    kind     uint8
//	    length   uint32, big endian, at most maxSection
//	    payload  length bytes
//	    checksum uint32, big endian: CRC-32C of kind, length and payload
//	an end section: kind secEnd, length 0 (and its checksum)
//
// The first section is secMeta; then any number of the others, in any
// order (cache entries come in chunks of about chunkSize bytes); the end
// section ends the stream, and nothing after it is read. Inside payloads
// integers are varints (encoding/binary), strings and byte strings a
// uvarint length and the bytes. A version change is any change of this
// layout or of a payload: readers refuse every version but their own.
const (
	stateMagic   = "dnsedge\x00state\x00\x00"
	stateVersion = 1

	secEnd    = 0
	secMeta   = 1 // written time (Unix ns), cache on (byte), trust key
	secHealth = 2 // count, then per path: upstream, proto, address, health
	secCache  = 3 // count, then per entry: see appendRecord
	secTicket = 4 // count, then per key: 32 bytes, age
	secQUIC   = 5 // stateless reset key, token key: 32 bytes each

	maxSection = 16 << 20
	chunkSize  = 1 << 20
	// maxRecords bounds the cache entries a stream may hold, and with
	// maxSection the memory ReadState needs.
	maxRecords = 16 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// write writes st to w in the format above.
func (st *serverState) write(w io.Writer) error {
	sw := &sectionWriter{w: w}
	hdr := append([]byte(stateMagic), 0, 0)
	binary.BigEndian.PutUint16(hdr[len(stateMagic):], stateVersion)
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	b := binary.AppendVarint(nil, st.written.UnixNano())
	b = append(b, boolByte(st.cacheOn))
	b = appendString(b, st.trust)
	sw.section(secMeta, b)

	b = binary.AppendUvarint(b[:0], uint64(len(st.health)))
	for id, hs := range st.health {
		b = appendString(b, id.Upstream)
		b = appendString(b, id.Proto)
		b = appendString(b, id.Addr.String())
		b = appendHealth(b, hs)
	}
	sw.section(secHealth, b)

	for i := 0; i < len(st.records); {
		var n int
		b = b[:0]
		for j := i; j < len(st.records) && len(b) < chunkSize; j++ {
			b = appendRecord(b, &st.records[j])
			n++
		}
		sw.section(secCache, append(binary.AppendUvarint(nil, uint64(n)), b...))
		i += n
	}

	b = binary.AppendUvarint(b[:0], uint64(len(st.tickets)))
	for _, k := range st.tickets {
		b = append(b, k.Key[:]...)
		b = binary.AppendVarint(b, int64(k.Age))
	}
	sw.section(secTicket, b)

	if st.quic != nil {
		b = append(b[:0], st.quic.Reset[:]...)
		sw.section(secQUIC, append(b, st.quic.Token[:]...))
	}
	sw.section(secEnd, nil)
	return sw.err
}

type sectionWriter struct {
	w   io.Writer
	err error
}

func (sw *sectionWriter) section(kind byte, payload []byte) {
	if sw.err != nil {
		return
	}
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	sum := crc32.Update(crc32.Checksum(hdr[:], crcTable), crcTable, payload)
	var tail [4]byte
	binary.BigEndian.PutUint32(tail[:], sum)
	for _, p := range [][]byte{hdr[:], payload, tail[:]} {
		if _, sw.err = sw.w.Write(p); sw.err != nil {
			return
		}
	}
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendHealth(b []byte, h transport.HealthState) []byte {
	b = append(b, byte(h.State))
	for _, v := range []int64{
		int64(h.SRTT), int64(h.RTTVar), int64(h.Samples), int64(h.SampledAgo),
		int64(h.Backoff), int64(h.Consecutive), int64(h.OpenedAgo), int64(h.ClosedAgo),
		int64(h.Cooldown), int64(h.LossAgo), int64(h.SeenAgo),
	} {
		b = binary.AppendVarint(b, v)
	}
	return binary.BigEndian.AppendUint64(b, math.Float64bits(h.Loss))
}

// appendRecord appends a cache entry: key, message, age (ns), TTL, stale
// window, flags (bit 0: authentic), DNSSEC verdict, hits, time since the
// last failed refresh (ns, -1 for none).
func appendRecord(b []byte, r *cache.Record) []byte {
	b = binary.AppendUvarint(b, uint64(len(r.Key)))
	b = append(b, r.Key...)
	b = binary.AppendUvarint(b, uint64(len(r.Msg)))
	b = append(b, r.Msg...)
	b = binary.AppendVarint(b, int64(r.Age))
	b = binary.AppendUvarint(b, uint64(r.TTL))
	b = binary.AppendUvarint(b, uint64(r.Stale))
	b = append(b, boolByte(r.Authentic), byte(r.DNSSEC))
	b = binary.AppendUvarint(b, uint64(r.Hits))
	return binary.AppendVarint(b, int64(r.FailedAgo))
}

// Errors of readState, wrapped with where they were found.
var (
	errStateMagic    = errors.New("not a dnsedge state")
	errStateChecksum = errors.New("checksum mismatch")
	errStateTrunc    = errors.New("truncated")
)

// readState reads and checks a whole state from r, reading nothing past
// its end section. Any error leaves nothing behind.
func readState(r io.Reader) (*serverState, error) {
	hdr := make([]byte, len(stateMagic)+2)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, fmt.Errorf("header: %w", readErr(err))
	}
	if string(hdr[:len(stateMagic)]) != stateMagic {
		return nil, errStateMagic
	}
	if v := binary.BigEndian.Uint16(hdr[len(stateMagic):]); v != stateVersion {
		return nil, fmt.Errorf("%w: version %d, this dnsedge reads version %d", ErrStateVersion, v, stateVersion)
	}
	st := &serverState{}
	seen := map[byte]bool{}
	for n := 0; ; n++ {
		kind, payload, err := readSection(r)
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", n, err)
		}
		if n == 0 && kind != secMeta {
			return nil, fmt.Errorf("section 0: kind %d, want the meta section first", kind)
		}
		if kind != secCache && seen[kind] {
			return nil, fmt.Errorf("section %d: kind %d repeated", n, kind)
		}
		seen[kind] = true
		d := &decoder{b: payload}
		switch kind {
		case secEnd:
			if len(payload) != 0 {
				return nil, fmt.Errorf("section %d: end section not empty", n)
			}
			return st, nil
		case secMeta:
			st.written = time.Unix(0, d.varint())
			st.cacheOn = d.bool()
			st.trust = d.string()
		case secHealth:
			err = st.readHealth(d)
		case secCache:
			err = st.readCache(d)
		case secTicket:
			err = st.readTickets(d)
		case secQUIC:
			st.quic = new(listen.QUICKeys)
			d.bytes(st.quic.Reset[:])
			d.bytes(st.quic.Token[:])
		default:
			return nil, fmt.Errorf("section %d: unknown kind %d", n, kind)
		}
		if err == nil {
			err = d.done()
		}
		if err != nil {
			return nil, fmt.Errorf("section %d (kind %d): %w", n, kind, err)
		}
	}
}

func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errStateTrunc
	}
	return err
}

// readSection reads one section and checks its length and checksum.
func readSection(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, readErr(err)
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxSection {
		return 0, nil, fmt.Errorf("length %d beyond %d", n, maxSection)
	}
	buf := make([]byte, n+4)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, readErr(err)
	}
	payload := buf[:n]
	sum := crc32.Update(crc32.Checksum(hdr[:], crcTable), crcTable, payload)
	if binary.BigEndian.Uint32(buf[n:]) != sum {
		return 0, nil, errStateChecksum
	}
	return hdr[0], payload, nil
}

func (st *serverState) readHealth(d *decoder) error {
	n := d.count(3)
	st.health = make(map[transport.PathID]transport.HealthState, n)
	for range n {
		var id transport.PathID
		id.Upstream, id.Proto = d.string(), d.string()
		addr := d.string()
		var h transport.HealthState
		h.State = transport.State(d.byte())
		vs := make([]int64, 11)
		for i := range vs {
			vs[i] = d.varint()
		}
		h.Loss = math.Float64frombits(d.uint64())
		if d.err != nil {
			return d.err
		}
		var err error
		if id.Addr, err = netip.ParseAddrPort(addr); err != nil {
			return fmt.Errorf("path %q: %w", id.Upstream, err)
		}
		h.SRTT, h.RTTVar, h.Samples, h.SampledAgo = time.Duration(vs[0]), time.Duration(vs[1]), int(vs[2]), time.Duration(vs[3])
		h.Backoff, h.Consecutive, h.OpenedAgo, h.ClosedAgo = int(vs[4]), int(vs[5]), time.Duration(vs[6]), time.Duration(vs[7])
		h.Cooldown, h.LossAgo, h.SeenAgo = time.Duration(vs[8]), time.Duration(vs[9]), time.Duration(vs[10])
		if !h.Valid() {
			return fmt.Errorf("path %s: health out of range", id)
		}
		if _, dup := st.health[id]; dup {
			return fmt.Errorf("path %s: repeated", id)
		}
		st.health[id] = h
	}
	return nil
}

func (st *serverState) readCache(d *decoder) error {
	n := d.count(20)
	if len(st.records)+n > maxRecords {
		return fmt.Errorf("more than %d cache entries", maxRecords)
	}
	for range n {
		var r cache.Record
		r.Key = d.byteString()
		r.Msg = d.byteString()
		r.Age = time.Duration(d.varint())
		ttl, stale := d.uvarint(), d.uvarint()
		r.Authentic = d.bool()
		r.DNSSEC = pipeline.DNSSECVerdict(d.byte())
		hits := d.uvarint()
		r.FailedAgo = time.Duration(d.varint())
		if d.err != nil {
			return d.err
		}
		if ttl > math.MaxUint32 || stale > math.MaxUint32 || hits > math.MaxUint32 {
			return errors.New("cache entry: value out of range")
		}
		r.TTL, r.Stale, r.Hits = uint32(ttl), uint32(stale), uint32(hits)
		if err := cache.CheckRecord(&r); err != nil {
			return fmt.Errorf("cache entry %d: %w", len(st.records), err)
		}
		st.records = append(st.records, r)
	}
	return nil
}

func (st *serverState) readTickets(d *decoder) error {
	n := d.count(33)
	st.tickets = make([]edgetls.TicketKey, 0, n)
	for range n {
		var k edgetls.TicketKey
		d.bytes(k.Key[:])
		k.Age = time.Duration(d.varint())
		if d.err == nil && k.Age < 0 {
			return errors.New("ticket key: negative age")
		}
		st.tickets = append(st.tickets, k)
	}
	return d.err
}

// A decoder reads a payload; the first error sticks and later reads
// return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errStateTrunc
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	if d.err == nil {
		d.err = errors.New("bad boolean")
	}
	return false
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint64() uint64 {
	if d.err != nil || len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// count reads a count of items at least min bytes each, refusing one the
// rest of the payload cannot hold.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/min) {
		d.err = fmt.Errorf("count %d beyond what the section holds", n)
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

// byteString returns a length-prefixed byte string; it shares the
// payload's memory.
func (d *decoder) byteString() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) string() string { return string(d.byteString()) }

func (d *decoder) bytes(dst []byte) {
	if d.err != nil || len(d.b) < len(dst) {
		d.fail()
		return
	}
	copy(dst, d.b)
	d.b = d.b[len(dst):]
}

// done reports an error when bytes are left over.
func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d bytes left over", len(d.b))
	}
	return d.err
}
