package listen

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/http2"

	"github.com/dnsedge/dnsedge/edge/listen/internal/h2"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// TestDoHH2Settings checks the SETTINGS exchange and PING.
func TestDoHH2Settings(t *testing.T) {
	t.Parallel()
	cfg := dohTestConfig(t, fam4, &fakeHandler{t: t}, testTLS(t))
	cfg.MaxQueriesPerConn = 7
	l := startDoH(t, cfg)
	h := dialH2Raw(t, l, false)
	f, ok := h.read().(*http2.SettingsFrame)
	if !ok || f.IsAck() {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	for id, want := range map[http2.SettingID]uint32{
		http2.SettingMaxConcurrentStreams: 7,
		http2.SettingInitialWindowSize:    h2.StreamWindow,
		http2.SettingMaxHeaderListSize:    dohMaxHeaderBytes,
	} {
		if v, ok := f.Value(id); !ok || v != want {
			t.Errorf("%v = %d (%v), want %d", id, v, ok, want)
		}
	}
	h.fr.WriteSettingsAck()
	h.fr.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
	acked := false
	for {
		switch f := h.read().(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				t.Fatal("second SETTINGS")
			}
			acked = true
		case *http2.PingFrame:
			if !f.IsAck() || f.Data != [8]byte{1, 2, 3, 4, 5, 6, 7, 8} {
				t.Fatalf("PING %v %x", f.IsAck(), f.Data)
			}
			if !acked {
				t.Error("no SETTINGS ACK before the PING ACK")
			}
			return
		case *http2.WindowUpdateFrame:
			if f.StreamID != 0 || f.Increment != h2.ConnWindow-65535 {
				t.Errorf("WINDOW_UPDATE %d on %d", f.Increment, f.StreamID)
			}
		default:
			t.Fatalf("unexpected %v", f.Header())
		}
	}
}

// TestDoHH2FlowControl answers many streams at once with replies of about
// 60 KB to a client whose stream window is 1000 bytes: they come whole,
// after many WINDOW_UPDATEs.
func TestDoHH2FlowControl(t *testing.T) {
	t.Parallel()
	var rrs []string
	for i := range 6 {
		var txt strings.Builder
		for range 40 {
			txt.WriteString(` "` + strings.Repeat(strconv.Itoa(i), 250) + `"`)
		}
		rrs = append(rrs, "an:big.example. 60 IN TXT"+txt.String())
	}
	cfg := dohTestConfig(t, fam4, &fakeHandler{t: t, serve: dohZoneReply(dns.RcodeSuccess, rrs...)}, testTLS(t))
	l := startDoH(t, cfg)
	h := dialH2Raw(t, l, false, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1000},
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16384})
	var ids []uint32
	for i := range 20 {
		id := uint32(2*i + 1)
		ids = append(ids, id)
		h.get(id, query("big.example.", dns.TypeTXT))
	}
	got := h.collect(func(http2.Frame) {}, ids...)
	for _, id := range ids {
		r := got[id]
		if r.status != "200" || r.resetB {
			t.Fatalf("stream %d: status %q reset %v", id, r.status, r.reset)
		}
		m := new(dns.Msg)
		if err := m.Unpack(r.body); err != nil || len(m.Answer) != 6 {
			t.Fatalf("stream %d: %d bytes, %v", id, len(r.body), err)
		}
		if len(r.body) < 60000 || r.header["content-length"] != strconv.Itoa(len(r.body)) {
			t.Errorf("stream %d: %d bytes, content-length %s", id, len(r.body), r.header["content-length"])
		}
	}
}

// blockingHandler answers A records once release is closed, and signals
// every query on arrived.
func blockingHandler(t *testing.T, n int) (*fakeHandler, chan struct{}, chan struct{}) {
	arrived, release := make(chan struct{}, n), make(chan struct{})
	return &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return answerA(ctx, req)
	}}, arrived, release
}

// TestDoHH2RefusedStream opens more streams than MaxQueriesPerConn.
func TestDoHH2RefusedStream(t *testing.T) {
	t.Parallel()
	h, arrived, release := blockingHandler(t, 4)
	cfg := dohTestConfig(t, fam4, h, testTLS(t))
	cfg.MaxQueriesPerConn = 2
	l := startDoH(t, cfg)
	c := dialH2Raw(t, l, false)
	c.get(1, query("a.example.", dns.TypeA))
	c.get(3, query("b.example.", dns.TypeA))
	<-arrived
	<-arrived
	c.get(5, query("c.example.", dns.TypeA))
	got := c.collect(func(http2.Frame) {}, 5)
	if !got[5].resetB || got[5].reset != http2.ErrCodeRefusedStream {
		t.Fatalf("stream 5: %+v, want REFUSED_STREAM", got[5])
	}
	close(release)
	got = c.collect(func(http2.Frame) {}, 1, 3)
	for _, id := range []uint32{1, 3} {
		if got[id].status != "200" {
			t.Errorf("stream %d: %+v", id, got[id])
		}
	}
	// A slot is free again.
	c.get(7, query("d.example.", dns.TypeA))
	if got := c.collect(nil, 7); got[7].status != "200" {
		t.Errorf("stream 7 after the others: %+v", got[7])
	}
}

// TestDoHH2ClientReset resets a POST before its body ends and a GET being
// served: neither is answered, and the connection goes on.
func TestDoHH2ClientReset(t *testing.T) {
	t.Parallel()
	h, arrived, release := blockingHandler(t, 4)
	l := startDoH(t, dohTestConfig(t, fam4, h, testTLS(t)))
	c := dialH2Raw(t, l, false)
	wire := dohPack(t, query("a.example.", dns.TypeA))
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
		BlockFragment: c.block("POST", "/dns-query", "content-type", dnsMessageType)})
	c.fr.WriteData(1, false, wire[:5])
	c.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	c.get(3, query("b.example.", dns.TypeA))
	<-arrived // stream 3; stream 1 never reaches the handler
	c.fr.WriteRSTStream(3, http2.ErrCodeCancel)
	c.get(5, query("c.example.", dns.TypeA))
	<-arrived
	close(release)
	got := c.collect(func(f http2.Frame) {
		if f.Header().StreamID == 1 || f.Header().StreamID == 3 {
			t.Errorf("frame %v on a reset stream", f.Header())
		}
	}, 5)
	if got[5].status != "200" {
		t.Errorf("stream 5: %+v", got[5])
	}
	select {
	case <-arrived:
		t.Error("the reset POST reached the handler")
	default:
	}
}

// TestDoHH2Continuation sends a header block in a HEADERS and a
// CONTINUATION frame.
func TestDoHH2Continuation(t *testing.T) {
	t.Parallel()
	l := startDoH(t, dohTestConfig(t, fam4, &fakeHandler{t: t, serve: answerA}, testTLS(t)))
	c := dialH2Raw(t, l, false)
	b := c.block("GET", "/dns-query?dns="+dohB64(t, query("example.org.", dns.TypeA)), "accept", dnsMessageType)
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:10], EndStream: true})
	c.fr.WriteContinuation(1, false, b[10:20])
	c.fr.WriteContinuation(1, true, b[20:])
	got := c.collect(nil, 1)
	m := new(dns.Msg)
	if got[1].status != "200" || m.Unpack(got[1].body) != nil || len(m.Answer) != 1 {
		t.Fatalf("reply %+v", got[1])
	}
	if got[1].header["content-type"] != dnsMessageType || got[1].header["cache-control"] != "max-age=60" {
		t.Errorf("headers %v", got[1].header)
	}
}

// TestDoHH2ConnectionErrors checks the GOAWAY of each kind of misuse, and
// that the connection is closed after it.
func TestDoHH2ConnectionErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		send func(c *h2Raw)
		code http2.ErrCode
	}{
		{"even stream id", func(c *h2Raw) { c.get(2, query("example.org.", dns.TypeA)) }, http2.ErrCodeProtocol},
		{"decreasing stream id", func(c *h2Raw) {
			c.get(5, query("example.org.", dns.TypeA))
			c.get(3, query("example.org.", dns.TypeA))
		}, http2.ErrCodeStreamClosed},
		{"frame too large", func(c *h2Raw) { c.fr.WriteRawFrame(http2.FramePing, 0, 0, make([]byte, h2.MaxFrame+1)) }, http2.ErrCodeFrameSize},
		{"bad hpack", func(c *h2Raw) {
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff}, EndStream: true, EndHeaders: true})
		}, http2.ErrCodeCompression},
		{"data on idle stream", func(c *h2Raw) { c.fr.WriteData(9, true, []byte("x")) }, http2.ErrCodeProtocol},
		{"push promise", func(c *h2Raw) {
			c.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: c.block("GET", "/"), EndHeaders: true})
		}, http2.ErrCodeProtocol},
		{"window overflow", func(c *h2Raw) { c.fr.WriteWindowUpdate(0, 1<<31-1) }, http2.ErrCodeFlowControl},
	}
	pki := testTLS(t)
	l := startDoH(t, dohTestConfig(t, fam4, &fakeHandler{t: t, serve: answerA}, pki))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := dialH2Raw(t, l, false)
			tt.send(c)
			var ga *http2.GoAwayFrame
			for ga == nil {
				switch f := c.read().(type) {
				case *http2.GoAwayFrame:
					ga = f
				case *http2.SettingsFrame, *http2.WindowUpdateFrame, *http2.MetaHeadersFrame, *http2.DataFrame:
				default:
					t.Fatalf("frame %v before GOAWAY", f.Header())
				}
			}
			if ga.ErrCode != tt.code {
				t.Errorf("GOAWAY %v, want %v", ga.ErrCode, tt.code)
			}
			if !c.closedWithin(2 * time.Second) {
				t.Error("connection left open after GOAWAY")
			}
		})
	}
}

// TestDoHH2BadPreface checks that a client sending something else than
// the HTTP/2 preface is disconnected.
func TestDoHH2BadPreface(t *testing.T) {
	t.Parallel()
	l := startDoH(t, dohTestConfig(t, fam4, &fakeHandler{t: t}, testTLS(t)))
	c := dialH2Raw(t, l, true)
	io.WriteString(c.conn, "GET / HTTP/1.1\r\nHost: dns.test\r\n\r\n")
	if !c.closedWithin(2 * time.Second) {
		t.Fatal("connection left open after a bad preface")
	}
}

// TestDoHH2Slowloris sends half a frame, then nothing: the connection is
// cut after ReadTimeout. A client that says nothing at all is cut after
// IdleTimeout.
func TestDoHH2Slowloris(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		send func(c *h2Raw)
	}{
		{"half a frame header", func(c *h2Raw) { c.conn.Write([]byte{0, 0, 8, byte(http2.FramePing)}) }},
		{"half a frame", func(c *h2Raw) { c.conn.Write([]byte{0, 0, 8, byte(http2.FramePing), 0, 0, 0, 0, 0, 1, 2, 3}) }},
		{"header block without its end", func(c *h2Raw) {
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block("GET", "/dns-query")[:4]})
		}},
		{"body never sent", func(c *h2Raw) {
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
				BlockFragment: c.block("POST", "/dns-query", "content-type", dnsMessageType)})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := dohTestConfig(t, fam4, &fakeHandler{t: t}, testTLS(t))
			cfg.ReadTimeout = 300 * time.Millisecond
			cfg.IdleTimeout = 10 * time.Second
			l := startDoH(t, cfg)
			c := dialH2Raw(t, l, false)
			begin := time.Now()
			tt.send(c)
			if !c.closedWithin(3 * time.Second) {
				t.Fatal("not cut within 3s")
			}
			if took := time.Since(begin); took < 250*time.Millisecond || took > 2*time.Second {
				t.Errorf("cut after %v, want about %v", took, cfg.ReadTimeout)
			}
		})
	}
	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		cfg := dohTestConfig(t, fam4, &fakeHandler{t: t}, testTLS(t))
		cfg.IdleTimeout = 300 * time.Millisecond
		l := startDoH(t, cfg)
		c := dialH2Raw(t, l, false)
		if ga := c.goAway(); ga.ErrCode != http2.ErrCodeNo {
			t.Errorf("GOAWAY %v", ga.ErrCode)
		}
		if !c.closedWithin(2 * time.Second) {
			t.Fatal("idle connection left open")
		}
	})
}

// TestDoHH2CloseInFlight closes the listener with streams in flight: the
// client gets a GOAWAY naming the last of them, then their replies, then
// the connection closes.
func TestDoHH2CloseInFlight(t *testing.T) {
	t.Parallel()
	h, arrived, release := blockingHandler(t, 3)
	l, err := ListenDoH(dohTestConfig(t, fam4, h, testTLS(t)))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- l.Serve() }()
	c := dialH2Raw(t, l, false)
	for _, id := range []uint32{1, 3, 5} {
		c.get(id, query("example.org.", dns.TypeA))
	}
	for range 3 {
		<-arrived
	}
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	ga := c.goAway()
	if ga.ErrCode != http2.ErrCodeNo || ga.LastStreamID != 5 {
		t.Errorf("GOAWAY %v last stream %d, want NO_ERROR and 5", ga.ErrCode, ga.LastStreamID)
	}
	c.get(7, query("example.org.", dns.TypeA)) // after GOAWAY: ignored
	close(release)
	got := c.collect(func(f http2.Frame) {
		if f.Header().StreamID == 7 {
			t.Errorf("frame %v on a stream after GOAWAY", f.Header())
		}
	}, 1, 3, 5)
	for id, r := range got {
		if r.status != "200" {
			t.Errorf("stream %d: %+v", id, r)
		}
	}
	if !c.closedWithin(3 * time.Second) {
		t.Error("connection left open after the last reply")
	}
	if err := <-closed; err != nil {
		t.Errorf("close: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
}

// TestDoHH2Interop runs real clients against the listener: h2load (many
// streams over a few connections), curl and kdig. Each is skipped when
// absent, unless E2E_REQUIRED=1.
func TestDoHH2Interop(t *testing.T) {
	t.Parallel()
	l := startDoH(t, dohTestConfig(t, fam4, &fakeHandler{t: t, serve: answerA}, testTLS(t)))
	url := "https://" + l.Addr().String() + "/dns-query"
	get := url + "?dns=" + dohB64(t, query("example.org.", dns.TypeA))
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, out string)
	}{
		{"h2load", []string{"h2load", "-n", "2000", "-c", "4", "-m", "50", get}, func(t *testing.T, out string) {
			if !strings.Contains(out, "2000 succeeded, 0 failed, 0 errored") || !strings.Contains(out, "status codes: 2000 2xx") {
				t.Errorf("h2load:\n%s", out)
			}
		}},
		{"curl", []string{"curl", "-sk", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code} %{content_type}", get}, func(t *testing.T, out string) {
			if out != "2 200 "+dnsMessageType {
				t.Errorf("curl: %q", out)
			}
		}},
		{"kdig post", []string{"kdig", "@" + l.Addr().Addr().String(), "-p", strconv.Itoa(int(l.Addr().Port())), "+https=/dns-query", "+short", "example.org.", "A"}, func(t *testing.T, out string) {
			if strings.TrimSpace(out) != "192.0.2.1" {
				t.Errorf("kdig: %q", out)
			}
		}},
		{"kdig get", []string{"kdig", "@" + l.Addr().Addr().String(), "-p", strconv.Itoa(int(l.Addr().Port())), "+https=/dns-query", "+https-get", "+short", "example.org.", "A"}, func(t *testing.T, out string) {
			if strings.TrimSpace(out) != "192.0.2.1" {
				t.Errorf("kdig: %q", out)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := exec.LookPath(tt.args[0]); err != nil {
				if os.Getenv("E2E_REQUIRED") == "1" {
					t.Fatalf("%s: %v", tt.args[0], err)
				}
				t.Skipf("%s: %v", tt.args[0], err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, tt.args[0], tt.args[1:]...).CombinedOutput()
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Fatal(err)
			}
			if err != nil {
				t.Fatalf("%s: %v\n%s", tt.args[0], err, out)
			}
			tt.check(t, string(out))
		})
	}
}

// TestDoHH2HeadersTooLarge sends a header list over MAX_HEADER_LIST_SIZE:
// it is answered 431 and the connection goes on.
func TestDoHH2HeadersTooLarge(t *testing.T) {
	t.Parallel()
	l := startDoH(t, dohTestConfig(t, fam4, &fakeHandler{t: t, serve: answerA}, testTLS(t)))
	c := dialH2Raw(t, l, false)
	b := c.block("GET", "/dns-query?dns="+dohB64(t, query("example.org.", dns.TypeA)), "x-pad", strings.Repeat("a", 4000), "x-pad2", strings.Repeat("b", 4500))
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b, EndStream: true, EndHeaders: true})
	c.get(3, query("example.org.", dns.TypeA))
	got := c.collect(nil, 1, 3)
	if got[1].status != "431" || got[3].status != "200" {
		t.Errorf("statuses %q and %q, want 431 and 200", got[1].status, got[3].status)
	}
}
