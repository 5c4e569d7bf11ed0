// Package dnstap writes the queries dnsedge answers, and its answers, as
// dnstap messages (https://dnstap.info): CLIENT_QUERY and CLIENT_RESPONSE,
// framed by Frame Streams, to a file or a unix socket, for operators who
// already collect dnstap. The encoding and framing are
// github.com/dnstap/golang-dnstap's.
//
// Writing never holds up a query: a query hands its messages to a
// bounded queue and goes on; what does not fit is dropped and counted.
package dnstap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	dt "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/internal/field"
)

// Config is the dnstap section. Exactly one of File and Socket turns it
// on; with neither, dnstap is off.
type Config struct {
	// File is written from its start (an existing file is truncated).
	File string `yaml:"file"`
	// Socket is a unix socket a dnstap collector listens on; dnsedge
	// reconnects when the collector goes away.
	Socket string `yaml:"socket"`
	// Identity names this server in every message; default the host
	// name.
	Identity string `yaml:"identity"`
	// Queue is how many messages may wait to be written; past it they
	// are dropped and counted. Default 4096.
	Queue int `yaml:"queue"`
}

// DefaultQueue is the default of Config.Queue.
const DefaultQueue = 4096

// On reports whether the section turns dnstap on.
func (c Config) On() bool { return c.File != "" || c.Socket != "" }

// WithDefaults returns c with the identity and queue filled in when it is
// on.
func (c Config) WithDefaults() Config {
	if !c.On() {
		return c
	}
	if c.Identity == "" {
		c.Identity, _ = os.Hostname()
	}
	if c.Queue == 0 {
		c.Queue = DefaultQueue
	}
	return c
}

// Validate reports every problem of the section.
func (c Config) Validate() error {
	var errs []error
	if c.File != "" && c.Socket != "" {
		errs = append(errs, field.Errorf("socket", "dnstap writes to a file or a socket, not both"))
	}
	if !c.On() && (c.Identity != "" || c.Queue != 0) {
		errs = append(errs, field.Errorf("", "dnstap needs a file or a socket"))
	}
	if c.Queue < 0 || c.Queue > 1<<20 {
		errs = append(errs, field.Errorf("queue", "queue %d must be from 1 to %d", c.Queue, 1<<20))
	}
	return errors.Join(errs...)
}

// Tap is a running dnstap output. It is safe for concurrent use.
type Tap struct {
	identity, version []byte
	queue             chan event
	out               dt.Output
	sent, dropped     atomic.Uint64
	done              chan struct{}
	once              sync.Once
	stop              chan time.Time // closed by Close
	closeWait         time.Duration  // how long Close writes what is queued
}

// event is one answered query, turned into messages by the writer.
type event struct {
	query, reply       *dns.Msg
	client, local      netip.AddrPort
	kind               pipeline.Kind
	received, answered time.Time
}

// messages is how many dnstap messages e makes.
func (e *event) messages() uint64 {
	if e.reply != nil {
		return 2
	}
	return 1
}

// New opens the output of cfg (the file is created now; the socket is
// dialled by the writer, which retries) and starts the writer. version
// is put in every message.
func New(cfg Config, version string) (*Tap, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var out dt.Output
	switch {
	case cfg.File != "":
		o, err := dt.NewFrameStreamOutputFromFilename(cfg.File)
		if err != nil {
			return nil, fmt.Errorf("open dnstap file: %w", err)
		}
		out = o
	case cfg.Socket != "":
		o, err := dt.NewFrameStreamSockOutput(&net.UnixAddr{Name: cfg.Socket, Net: "unix"})
		if err != nil {
			return nil, fmt.Errorf("dnstap socket %s: %w", cfg.Socket, err)
		}
		o.SetTimeout(2 * time.Second)
		o.SetRetryInterval(2 * time.Second)
		out = o
	default:
		return nil, errors.New("dnstap needs a file or a socket")
	}
	return start(out, cfg.Identity, version, cfg.Queue), nil
}

// start runs the writer over out.
func start(out dt.Output, identity, version string, queue int) *Tap {
	t := &Tap{
		identity: []byte(identity), version: []byte(version),
		queue: make(chan event, queue), out: out,
		done: make(chan struct{}), stop: make(chan time.Time), closeWait: time.Second,
	}
	go out.RunOutputLoop()
	go t.write()
	return t
}

// write turns events into frames for the output until Close, then
// writes what is still queued, for closeWait at most.
func (t *Tap) write() {
	defer close(t.done)
	var rest [][]byte // frames not yet handed over when Close came
	for rest == nil {
		select {
		case e := <-t.queue:
			rest = t.emit(t.frames(&e), t.stop)
		case <-t.stop:
			rest = [][]byte{}
		}
	}
	deadline := time.NewTimer(t.closeWait)
	defer deadline.Stop()
	rest = t.emit(rest, deadline.C)
	for {
		select {
		case e := <-t.queue:
			if len(rest) > 0 {
				t.dropped.Add(e.messages())
			} else {
				rest = t.emit(t.frames(&e), deadline.C)
			}
		default:
			t.dropped.Add(uint64(len(rest)))
			return
		}
	}
}

// emit hands frames to the output until abort fires, and returns those
// it could not: nil when it handed over all.
func (t *Tap) emit(frames [][]byte, abort <-chan time.Time) [][]byte {
	ch := t.out.GetOutputChannel()
	for i, f := range frames {
		select {
		case ch <- f:
			t.sent.Add(1)
			continue
		default:
		}
		select {
		case ch <- f:
			t.sent.Add(1)
		case <-abort:
			return frames[i:]
		}
	}
	return nil
}

// frames encodes the CLIENT_QUERY and, when there is a reply, the
// CLIENT_RESPONSE of e.
func (t *Tap) frames(e *event) [][]byte {
	qwire, err := packCopy(e.query)
	if err != nil {
		t.dropped.Add(2)
		return nil
	}
	base := func(typ dt.Message_Type) *dt.Message {
		m := &dt.Message{Type: &typ}
		fam, proto := family(e.client.Addr()), protocol(e.kind)
		m.SocketFamily, m.SocketProtocol = &fam, &proto
		m.QueryAddress = e.client.Addr().Unmap().AsSlice()
		qport := uint32(e.client.Port())
		m.QueryPort = &qport
		if e.local.IsValid() {
			m.ResponseAddress = e.local.Addr().Unmap().AsSlice()
			rport := uint32(e.local.Port())
			m.ResponsePort = &rport
		}
		qs, qn := uint64(e.received.Unix()), uint32(e.received.Nanosecond())
		m.QueryTimeSec, m.QueryTimeNsec = &qs, &qn
		return m
	}
	q := base(dt.Message_CLIENT_QUERY)
	q.QueryMessage = qwire
	msgs := []*dt.Message{q}
	if e.reply != nil {
		if rwire, err := packCopy(e.reply); err == nil {
			m := base(dt.Message_CLIENT_RESPONSE)
			m.QueryMessage = qwire
			m.ResponseMessage = rwire
			rs, rn := uint64(e.answered.Unix()), uint32(e.answered.Nanosecond())
			m.ResponseTimeSec, m.ResponseTimeNsec = &rs, &rn
			msgs = append(msgs, m)
		} else {
			t.dropped.Add(1)
		}
	}
	var out [][]byte
	typ := dt.Dnstap_MESSAGE
	for _, m := range msgs {
		b, err := proto.Marshal(&dt.Dnstap{Identity: t.identity, Version: t.version, Type: &typ, Message: m})
		if err != nil {
			t.dropped.Add(1)
			continue
		}
		out = append(out, b)
	}
	return out
}

// packCopy packs a shallow copy of m with an OPT record of its own:
// packing writes the extended RCODE into the OPT record, and the query and
// the reply are shared with the listener (see pipeline.Handler).
func packCopy(m *dns.Msg) ([]byte, error) {
	c := *m
	c.Extra = copyOPT(c.Extra)
	return c.Pack()
}

// copyOPT returns extra with its OPT record copied.
func copyOPT(extra []dns.RR) []dns.RR {
	out := make([]dns.RR, len(extra))
	for i, rr := range extra {
		if o, ok := rr.(*dns.OPT); ok {
			c := *o
			rr = &c
		}
		out[i] = rr
	}
	return out
}

func family(a netip.Addr) dt.SocketFamily {
	if a.Unmap().Is4() {
		return dt.SocketFamily_INET
	}
	return dt.SocketFamily_INET6
}

// socketProtocolDOQ is DNS over QUIC (RFC 9250) in dnstap.proto
// (SocketProtocol DOQ = 7); golang-dnstap v0.4.0's generated code predates
// it. Readers built from an older schema see the field as unknown.
const socketProtocolDOQ dt.SocketProtocol = 7

func protocol(k pipeline.Kind) dt.SocketProtocol {
	switch k {
	case pipeline.KindTCP:
		return dt.SocketProtocol_TCP
	case pipeline.KindDoT:
		return dt.SocketProtocol_DOT
	case pipeline.KindDoH:
		return dt.SocketProtocol_DOH
	case pipeline.KindDoQ:
		return socketProtocolDOQ
	}
	return dt.SocketProtocol_UDP
}

// Middleware queues every answered query (and every query answered with
// an error, as the listener will answer it) once next is done. Queries
// the pipeline drops are written as a CLIENT_QUERY alone. dnsedge's own
// queries (KindInternal) are not written.
func (t *Tap) Middleware(next pipeline.Handler) pipeline.Handler {
	return pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m, err := next.ServeDNS(ctx, req)
		if req.Listener == pipeline.KindInternal {
			return m, err
		}
		e := event{query: req.Msg, reply: m, client: req.Client, local: req.Local, kind: req.Listener, received: req.Received, answered: time.Now()}
		if err != nil && !errors.Is(err, pipeline.ErrDrop) {
			e.reply = pipeline.ErrorReply(req.Msg, err)
		}
		select {
		case t.queue <- e:
		default:
			t.dropped.Add(e.messages())
		}
		return m, err
	})
}

// Sent and Dropped count the messages handed to the output and those
// dropped: the queue was full, the output had stopped, or the message
// could not be encoded.
func (t *Tap) Sent() uint64    { return t.sent.Load() }
func (t *Tap) Dropped() uint64 { return t.dropped.Load() }

// Register adds dnsedge_dnstap_sent_total and dnsedge_dnstap_dropped_total
// to reg.
func (t *Tap) Register(reg prometheus.Registerer) error {
	return errors.Join(
		reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "dnsedge_dnstap_sent_total", Help: "dnstap messages handed to the output."}, func() float64 { return float64(t.Sent()) })),
		reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "dnsedge_dnstap_dropped_total", Help: "dnstap messages dropped: queue full, output stopped or not encodable."}, func() float64 { return float64(t.Dropped()) })),
	)
}

// Close writes what is queued, for a second at most, then closes the
// output (flushing a file). Later queries' messages are dropped. Close
// is idempotent.
func (t *Tap) Close() error {
	t.once.Do(func() {
		close(t.stop)
		<-t.done
		t.out.Close()
	})
	return nil
}
