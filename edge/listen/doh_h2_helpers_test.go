package listen

import (
	"bytes"
	"crypto/tls"
	"io"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Raw is an HTTP/2 client on a raw Framer, for protocol-level tests of
// the DoH listener's own HTTP/2 server.
type h2Raw struct {
	t    testing.TB
	conn *tls.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder
}

// dialH2Raw connects to l with ALPN h2; unless noPreface, it sends the
// client preface and a SETTINGS frame of settings.
func dialH2Raw(t testing.TB, l *DoH, noPreface bool, settings ...http2.Setting) *h2Raw {
	t.Helper()
	conn, err := dialDoHTLS(t, l, "h2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q", p)
	}
	h := &h2Raw{t: t, conn: conn, fr: http2.NewFramer(conn, conn)}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.fr.AllowIllegalWrites = true
	h.henc = hpack.NewEncoder(&h.hbuf)
	if !noPreface {
		if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
			t.Fatal(err)
		}
		if err := h.fr.WriteSettings(settings...); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// read returns the next frame, failing the test after 5s.
func (h *h2Raw) read() http2.Frame {
	h.t.Helper()
	h.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := h.fr.ReadFrame()
	if err != nil {
		h.t.Fatalf("read frame: %v", err)
	}
	return f
}

// block returns the header block of a request.
func (h *h2Raw) block(method, path string, extra ...string) []byte {
	h.hbuf.Reset()
	fields := append([]string{":method", method, ":scheme", "https", ":authority", "dns.test", ":path", path}, extra...)
	for i := 0; i < len(fields); i += 2 {
		h.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(h.hbuf.Bytes())
}

// get sends a GET of q on stream id.
func (h *h2Raw) get(id uint32, q *dns.Msg) {
	h.t.Helper()
	err := h.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID: id, BlockFragment: h.block("GET", "/dns-query?dns="+dohB64(h.t, q)),
		EndStream: true, EndHeaders: true,
	})
	if err != nil {
		h.t.Fatal(err)
	}
}

// h2Reply is the response on one stream.
type h2Reply struct {
	status string
	header map[string]string
	body   []byte
	done   bool
	reset  http2.ErrCode
	resetB bool
}

// collect reads frames, acknowledging SETTINGS and giving back the
// windows of the DATA it reads, until every stream of ids has ended
// (END_STREAM or RST_STREAM). Other frames go to other, when set.
func (h *h2Raw) collect(other func(http2.Frame), ids ...uint32) map[uint32]*h2Reply {
	h.t.Helper()
	out := make(map[uint32]*h2Reply)
	for _, id := range ids {
		out[id] = &h2Reply{header: map[string]string{}}
	}
	pending := len(ids)
	for pending > 0 {
		f := h.read()
		r := out[f.Header().StreamID]
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.fr.WriteSettingsAck()
			}
			continue
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				continue
			}
		case *http2.MetaHeadersFrame:
			if r != nil {
				for _, hf := range f.Fields {
					if hf.Name == ":status" {
						r.status = hf.Value
					}
					r.header[hf.Name] = hf.Value
				}
				if f.StreamEnded() {
					r.done = true
					pending--
				}
				continue
			}
		case *http2.DataFrame:
			if n := len(f.Data()); n > 0 {
				h.fr.WriteWindowUpdate(0, uint32(n))
				if !f.StreamEnded() {
					h.fr.WriteWindowUpdate(f.StreamID, uint32(n))
				}
			}
			if r != nil {
				r.body = append(r.body, f.Data()...)
				if f.StreamEnded() {
					r.done = true
					pending--
				}
				continue
			}
		case *http2.RSTStreamFrame:
			if r != nil && !r.done {
				r.reset, r.resetB, r.done = f.ErrCode, true, true
				pending--
				continue
			}
		}
		if other == nil {
			h.t.Fatalf("unexpected frame %v", f.Header())
		}
		other(f)
	}
	return out
}

// goAway reads frames until a GOAWAY and returns it.
func (h *h2Raw) goAway() *http2.GoAwayFrame {
	h.t.Helper()
	for {
		switch f := h.read().(type) {
		case *http2.GoAwayFrame:
			return f
		case *http2.SettingsFrame, *http2.WindowUpdateFrame:
		default:
			h.t.Fatalf("frame %v before GOAWAY", f.Header())
		}
	}
}

// closedWithin reports whether the server closes the connection within d.
func (h *h2Raw) closedWithin(d time.Duration) bool {
	h.conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, h.conn)
	return err == nil || !isTimeout(err)
}
