package dnstap

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dt "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
	"google.golang.org/protobuf/proto"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

func query(name string) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	q.SetEdns0(1232, false)
	return q
}

// answer answers every query with one A record, "drop.test." with
// ErrDrop and "fail.test." with an error.
var answer = pipeline.HandlerFunc(func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
	switch req.Question().Name {
	case "drop.test.":
		return nil, pipeline.ErrDrop
	case "fail.test.":
		return nil, errors.New("upstream gone")
	}
	m := new(dns.Msg).SetReply(req.Msg)
	m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: req.Question().Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: []byte{192, 0, 2, 1}}}
	return m, nil
})

// TestFileRoundTrip writes queries through the middleware to a file and
// reads them back with golang-dnstap's reader.
func TestFileRoundTrip(t *testing.T) {
	t.Parallel()
	name := filepath.Join(t.TempDir(), "edge.tap")
	tap, err := New(Config{File: name, Identity: "edge-1"}, "dnsedge test")
	if err != nil {
		t.Fatal(err)
	}
	h := tap.Middleware(answer)
	recv := time.Date(2026, 5, 1, 12, 0, 0, 5000, time.UTC)
	reqs := []*pipeline.Request{
		{Msg: query("a.test."), Client: netip.MustParseAddrPort("192.0.2.9:5353"), Local: netip.MustParseAddrPort("192.0.2.1:53"), Listener: pipeline.KindUDP, Received: recv},
		{Msg: query("b.test."), Client: netip.MustParseAddrPort("[2001:db8::9]:443"), Listener: pipeline.KindDoH, Received: recv},
		{Msg: query("drop.test."), Client: netip.MustParseAddrPort("192.0.2.9:5353"), Listener: pipeline.KindTCP, Received: recv},
		{Msg: query("fail.test."), Client: netip.MustParseAddrPort("192.0.2.9:5353"), Listener: pipeline.KindDoT, Received: recv},
		{Msg: query("internal.test."), Listener: pipeline.KindInternal, Received: recv},
	}
	for _, r := range reqs {
		h.ServeDNS(context.Background(), r)
	}
	tap.Close()
	if tap.Sent() != 7 || tap.Dropped() != 0 {
		t.Fatalf("sent %d dropped %d, want 7 and 0", tap.Sent(), tap.Dropped())
	}

	in, err := dt.NewFrameStreamInputFromFilename(name)
	if err != nil {
		t.Fatal(err)
	}
	frames := make(chan []byte, 16)
	go func() { in.ReadInto(frames); close(frames) }()
	var got []string
	for f := range frames {
		var d dt.Dnstap
		if err := proto.Unmarshal(f, &d); err != nil {
			t.Fatal(err)
		}
		m := d.GetMessage()
		if string(d.Identity) != "edge-1" || string(d.Version) != "dnsedge test" || d.GetType() != dt.Dnstap_MESSAGE {
			t.Errorf("frame identity %q version %q type %v", d.Identity, d.Version, d.GetType())
		}
		if m.GetQueryTimeSec() != uint64(recv.Unix()) || m.GetQueryTimeNsec() != 5000 {
			t.Errorf("query time %d.%d", m.GetQueryTimeSec(), m.GetQueryTimeNsec())
		}
		q := new(dns.Msg)
		if err := q.Unpack(m.QueryMessage); err != nil {
			t.Fatalf("query message: %v", err)
		}
		addr, _ := netip.AddrFromSlice(m.QueryAddress)
		line := strings.Join([]string{m.GetType().String(), m.GetSocketProtocol().String(), m.GetSocketFamily().String(),
			netip.AddrPortFrom(addr, uint16(m.GetQueryPort())).String(), q.Question[0].Name}, " ")
		if len(m.ResponseMessage) > 0 {
			r := new(dns.Msg)
			if err := r.Unpack(m.ResponseMessage); err != nil {
				t.Fatalf("response message: %v", err)
			}
			line += " " + dns.RcodeToString[r.Rcode]
			if m.GetResponseTimeSec() == 0 {
				t.Errorf("%s: no response time", line)
			}
		}
		if m.ResponseAddress != nil {
			ra, _ := netip.AddrFromSlice(m.ResponseAddress)
			line += " at " + netip.AddrPortFrom(ra, uint16(m.GetResponsePort())).String()
		}
		got = append(got, line)
	}
	in.Wait()
	want := []string{
		"CLIENT_QUERY UDP INET 192.0.2.9:5353 a.test. at 192.0.2.1:53",
		"CLIENT_RESPONSE UDP INET 192.0.2.9:5353 a.test. NOERROR at 192.0.2.1:53",
		"CLIENT_QUERY DOH INET6 [2001:db8::9]:443 b.test.",
		"CLIENT_RESPONSE DOH INET6 [2001:db8::9]:443 b.test. NOERROR",
		"CLIENT_QUERY TCP INET 192.0.2.9:5353 drop.test.",
		"CLIENT_QUERY DOT INET 192.0.2.9:5353 fail.test.",
		"CLIENT_RESPONSE DOT INET 192.0.2.9:5353 fail.test. SERVFAIL",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("read back:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// stuckOutput is an output whose collector never reads.
type stuckOutput struct{ ch chan []byte }

func (s *stuckOutput) GetOutputChannel() chan []byte { return s.ch }
func (s *stuckOutput) RunOutputLoop()                {}
func (s *stuckOutput) Close()                        {}

// TestDropsWhenFull: a query never waits for a stuck output; what does
// not fit in the queue is dropped and counted.
func TestDropsWhenFull(t *testing.T) {
	t.Parallel()
	tap := start(&stuckOutput{ch: make(chan []byte)}, "x", "v", 4)
	tap.closeWait = 0 // Close gives up on the stuck output at once
	h := tap.Middleware(answer)
	const n = 50
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			h.ServeDNS(context.Background(), &pipeline.Request{Msg: query("a.test."), Client: netip.MustParseAddrPort("192.0.2.9:53"), Listener: pipeline.KindUDP})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("queries waited for the output")
	}
	// At most the queue and the event the writer holds are not dropped.
	if d := tap.Dropped(); d < 2*(n-4-1) {
		t.Errorf("dropped %d messages, want at least %d", d, 2*(n-4-1))
	}
	tap.Close()
	if tap.Sent() != 0 {
		t.Errorf("sent %d to an output that never read", tap.Sent())
	}
	if d := tap.Dropped(); d != 2*n {
		t.Errorf("dropped %d after Close, want all %d", d, 2*n)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"off", Config{}, ""},
		{"file", Config{File: "/tmp/x.tap"}, ""},
		{"socket", Config{Socket: "/run/dnstap.sock", Identity: "e1", Queue: 10}, ""},
		{"both", Config{File: "a", Socket: "b"}, "socket: dnstap writes to a file or a socket, not both"},
		{"identity alone", Config{Identity: "e1"}, "dnstap needs a file or a socket"},
		{"queue", Config{File: "a", Queue: -1}, "queue: queue -1 must be from 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
