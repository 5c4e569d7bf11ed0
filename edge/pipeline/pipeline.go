// Package pipeline defines the one interface every part of dnsedge's query
// path speaks: a Handler answers one Request. Listeners build the Request and
// own the wire; middleware wrap handlers; the forward handler ends the chain.
//
// The package imports only miekg/dns so that listeners and middleware can
// both depend on it without cycles.
package pipeline

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// A Handler answers one query.
//
// Three outcomes are allowed: (msg, nil) answers with msg; (nil, err) makes
// the listener answer SERVFAIL with an Extended DNS Error (RFC 8914) taken
// from a *Error in err's chain when there is one; (nil, ErrDrop) sends
// nothing. (nil, nil) is a bug in the handler: the listener logs it and
// answers SERVFAIL.
//
// req.Msg is read-only: a handler that needs a changed message works on a
// copy. Implementations must be safe for concurrent use.
//
// A handler that waits (for an upstream, another goroutine, a store)
// waits on ctx.Done(), or calls Waits(ctx) first when it waits on
// something else: besides ending the wait at the query's deadline, that
// is how the listener learns the query waits (the UDP listener serves
// queries on the goroutine that read them and hands the reading on then).
//
// The reply is read-only too, once returned: its records, their slices
// (OPT options, RDATA) and its sections' backing arrays may be shared with
// a cache and with replies to other queries being served at the same
// time. Only the Msg struct itself belongs to the caller, so setting a
// header field or assigning a whole section is fine. A middleware that
// changes a reply any other way works on a copy: a new section slice
// rather than an append to the old one (slices.Clone, then append), a
// copied record (dns.Copy) rather than a changed one. Packing counts as
// a change: miekg/dns's Pack writes the extended RCODE into the OPT
// record, so pack a shallow copy that carries an OPT of its own, as the
// listeners do (listen.Finish).
type Handler interface {
	ServeDNS(ctx context.Context, req *Request) (*dns.Msg, error)
}

// A Waiter is told that the query it belongs to is about to wait. The
// context a listener serves a query under returns its Waiter, if it has
// one, from Value(WaiterKey).
type Waiter interface{ Waits() }

type waiterKey struct{}

// WaiterKey is the context key of the query's Waiter.
var WaiterKey = waiterKey{}

// Waits tells the listener serving the query of ctx that it is about to
// wait; see Handler. Asking ctx for its Done channel tells it too.
func Waits(ctx context.Context) {
	if w, ok := ctx.Value(WaiterKey).(Waiter); ok {
		w.Waits()
	}
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, req *Request) (*dns.Msg, error)

// ServeDNS calls f.
func (f HandlerFunc) ServeDNS(ctx context.Context, req *Request) (*dns.Msg, error) {
	return f(ctx, req)
}

// Middleware wraps a handler. Post-processing is done by calling next and
// working on what it returns.
type Middleware func(next Handler) Handler

// Chain returns h wrapped by mws, the first middleware outermost: Chain(h,
// a, b) serves a query through a, then b, then h. It is built once per
// configuration generation, never per query.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// Kind names the listener a query arrived on.
type Kind uint8

// Listener kinds.
const (
	KindUDP Kind = iota + 1
	KindTCP
	KindDoT
	KindDoH
	KindDoQ
	KindInternal // queries dnsedge makes itself (diagnose, prefetch)
)

var kindNames = [...]string{"", "udp", "tcp", "dot", "doh", "doq", "internal"}

// Encrypted reports whether queries of this kind arrive over TLS or QUIC.
func (k Kind) Encrypted() bool { return k == KindDoT || k == KindDoH || k == KindDoQ }

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Request is one query and what the edge knows about it. Listeners fill it
// once; middleware may set the fields documented as theirs (Tags, Route,
// ECS, TraceID, TSIG, TSIGKey, Signer, Outcome) on the request they were
// given, since a Request belongs to exactly one query and is never shared
// between goroutines serving it concurrently. A stage that serves a query
// of its own from a request (a background refresh) copies the Request,
// and must then drop Wire, Upstream, Cached and Signer and reset Outcome
// (see Detach).
type Request struct {
	// Msg is the query as received (ID included). Read-only.
	Msg *dns.Msg
	// Wire is Msg as it arrived on the wire, the bytes TSIG signs (RFC
	// 8945 §4.3). Read-only. It is valid only until the listener has
	// built the reply (during ServeDNS): listeners lend their read
	// buffer, so a stage that keeps it afterwards must copy it. It is
	// nil for queries that had no wire form: the DoH JSON API's, which
	// are built from URL parameters, and dnsedge's own (KindInternal).
	Wire []byte
	// TSIG is what TSIG verification found; TSIGNone until it runs.
	TSIG TSIGState
	// TSIGKey is the name of the key a TSIGVerified query was signed
	// with, lower case and fully qualified; empty otherwise.
	TSIGKey string
	// RequireTSIG is set by a listener configured to serve signed
	// queries only: the TSIG stage answers an unsigned one REFUSED.
	RequireTSIG bool
	// Signer, when not nil, signs the reply to this query: the listener
	// hands it the finished reply instead of packing it (RFC 8945 §5.3).
	// Set by the TSIG stage for verified queries and for the errors the
	// RFC answers with a TSIG record (BADKEY, BADSIG, BADTIME).
	Signer ReplySigner
	// Outcome is what the stages learned while answering: where the
	// answer came from, the upstream path, the tenant, the EDE, the
	// latency. The query log reads it.
	Outcome Outcome
	// Client is the source address of the query; Local the address it
	// arrived on.
	Client netip.AddrPort
	Local  netip.AddrPort
	// Listener is the kind of listener that received the query.
	Listener Kind
	// ClientID identifies the client where the transport carries one
	// (DoH path, DoT/DoQ SNI label); empty otherwise.
	ClientID string
	// TLS is the connection state on encrypted listeners, nil otherwise.
	TLS *tls.ConnectionState
	// Conn is the memo of the connection the query came over, shared by
	// its queries; nil where there is no connection (UDP) or the
	// listener keeps none.
	Conn *ConnMemo
	// TraceID correlates logs of this query across hops: taken from the
	// client (DoH traceparent or X-DNS-TraceID) or from the query's span.
	// Read it with Trace, which makes one when none came and the trace
	// stage asked for it. TraceStage is the client's X-DNS-Stage, if any.
	TraceID    string
	TraceStage string
	// TraceParent is the client's W3C traceparent header (DoH), checked
	// for form, empty when none came: spans are parented on it.
	TraceParent string
	wantTrace   bool // Trace makes a trace id when none came
	// Tags are "key=value" labels given by policy and propagated upstream.
	Tags []string
	// ECSAction is policy's decision on the client subnet sent upstream;
	// the ECS stage turns it into ECS.
	ECSAction ECSAction
	// ECS is the client subnet to forward (RFC 7871), invalid if none.
	ECS netip.Prefix
	// AllowANY lets a forwarded ANY query through as asked; otherwise
	// it gets the minimal answer of RFC 8482. Set by policy.
	AllowANY bool
	// Route is the upstream group chosen for this query; empty means the
	// default group.
	Route string
	// Received is when the listener read the query.
	Received time.Time
	// MaxSize is the largest answer the client accepts on this transport:
	// its EDNS buffer size (or 512) on UDP, 65535 on stream transports.
	MaxSize int
	// Upstream is set by the forward handler when the transport kept
	// the answer's wire form; see UpstreamReply.
	Upstream UpstreamReply
	// Cached is set by the cache when it answers with a wire form the
	// listener may send; see CachedReply.
	Cached CachedReply
}

// UpstreamReply is an answer the forward handler returned together with
// its wire form: Wire is Msg packed, as the upstream sent it with the
// header bits forward changed (ID, AA, RA) changed in it too. A stage
// that gets Msg itself back from next (the same pointer: replies are
// read-only, so it is still that message) may use Wire instead of
// packing Msg; the cache stores it. Wire may be kept and modified by
// the one stage that takes it (the cache); nobody else reads it after.
type UpstreamReply struct {
	Msg  *dns.Msg
	Wire []byte
}

// WireOf returns the wire form of m if m is the forward handler's answer
// and its wire form was kept, else nil.
func (u UpstreamReply) WireOf(m *dns.Msg) []byte {
	if m == nil || u.Msg != m {
		return nil
	}
	return u.Wire
}

// CachedReply is an answer from the cache returned with a wire form of
// it ready for a client: Wire is Msg packed (names compressed) with no
// OPT record, and its ID and header bits are to be overwritten; Msg has
// no EDNS option a client would get and an RCODE that needs no OPT. For
// a hit Wire is what the cache packed; for a miss it is the upstream's
// bytes with their OPT record cut off. A listener that gets Msg itself
// back from the pipeline (the same pointer: no stage replaced the
// answer) may send Wire with the query's ID, Msg's header bits and its
// own OPT, instead of packing Msg. Wire may be shared by every hit on an
// entry: it is read-only.
type CachedReply struct {
	Msg  *dns.Msg
	Wire []byte
}

// WireOf returns the wire form of m if m is the cache's answer and it
// came with one, else nil.
func (c CachedReply) WireOf(m *dns.Msg) []byte {
	if m == nil || c.Msg != m {
		return nil
	}
	return c.Wire
}

// ConnMemo is where the policy stage keeps, for a connection's next
// queries, what it worked out from the fields of a Request that are the
// same for every query of the connection (Client's address, Listener,
// ClientID). It checks before using it that it was made from the
// request's own fields and by the stage's own generation, so a stale or
// foreign value costs a lookup, never a wrong decision. The listener
// makes one per connection; its zero value is empty. Safe for concurrent
// use.
type ConnMemo struct{ policy atomic.Value }

// Policy returns what the policy stage stored, nil for nothing.
func (c *ConnMemo) Policy() any { return c.policy.Load() }

// SetPolicy stores v for the policy stage, which always stores values
// of one type.
func (c *ConnMemo) SetPolicy(v any) { c.policy.Store(v) }

// ReplySigner signs the reply to a TSIG-signed query (RFC 8945 §5.3).
// Implementations are safe for concurrent use.
type ReplySigner interface {
	// Overhead is an upper bound of the bytes the TSIG record adds to a
	// reply, so that a listener truncates a reply that would not fit
	// with it.
	Overhead() int
	// Sign packs reply with a TSIG record appended and returns the wire
	// form. reply has no TSIG record of its own; Sign may set its
	// additional section (to a new slice) but changes nothing else.
	Sign(reply *dns.Msg) ([]byte, error)
}

// Detach returns a copy of r for a query that outlives r's, such as a
// background refresh: it has no Wire (the listener's buffer goes back
// when r is answered), no Signer (nobody signs its answer) and a zero
// Outcome (the copy's stages tell their own). Msg is shared; the caller
// copies it if r's may change.
func (r *Request) Detach() Request {
	r.Trace() // the copy logs under the query's trace id
	c := *r
	c.Wire = nil
	c.Upstream = UpstreamReply{}
	c.Cached = CachedReply{}
	c.Signer = nil
	c.Outcome = Outcome{}
	return c
}

// WantTraceID makes Trace give every query a trace id: the one that came
// with it, else a new one, made the first time Trace is called. A query
// whose trace id nobody reads (a cache hit that is not logged, over a
// listener that does not echo it) never pays for one.
func (r *Request) WantTraceID() { r.wantTrace = true }

// Trace returns the query's trace id (see TraceID and WantTraceID);
// empty when none came and none was wanted.
func (r *Request) Trace() string {
	if r.TraceID == "" && r.wantTrace {
		r.TraceID = NewTraceID()
	}
	return r.TraceID
}

// NewTraceID returns a random W3C trace id (32 lower-case hex digits, not
// all zero). It is not secret: math/rand/v2's generator, seeded from the
// system, suffices, and costs no system call.
func NewTraceID() string {
	var b [16]byte
	for {
		binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
		binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
		if b != [16]byte{} {
			return hex.EncodeToString(b[:])
		}
	}
}

// Question returns the first question of the query. Listeners only pass on
// queries with exactly one question, so handlers may rely on it.
func (r *Request) Question() dns.Question {
	if len(r.Msg.Question) == 0 {
		return dns.Question{}
	}
	return r.Msg.Question[0]
}

// ErrDrop tells the listener to send no answer at all.
var ErrDrop = errors.New("drop query")

// ErrUpstreamFailed is in the chain of the error returned when every path
// of the upstream group chosen for a query failed to answer. Stages that
// answer only when the upstreams cannot (the fallback zone) look for it
// with errors.Is.
var ErrUpstreamFailed = errors.New("every upstream path failed")

// Error is a failure that carries the DNS answer it should turn into: an
// RCODE (SERVFAIL when zero) and an Extended DNS Error code (RFC 8914 §4).
type Error struct {
	Rcode int
	EDE   uint16
	// Text is the EXTRA-TEXT of the EDE option, shown to the client.
	Text string
	Err  error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("%s (EDE %d)", dns.RcodeToString[e.rcode()], e.EDE)
	}
	return e.Err.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func (e *Error) rcode() int {
	if e.Rcode == 0 {
		return dns.RcodeServerFailure
	}
	return e.Rcode
}

// EDE returns the Extended DNS Error of the answer to r when the handler
// returned err: for a non-nil err other than ErrDrop, the one ErrorReply
// puts in the reply (the *Error's code and text, or 0, Other Error, with
// no text); otherwise the one a stage recorded in r.Outcome, if any.
func (r *Request) EDE(err error) (code uint16, text string, ok bool) {
	if err != nil && !errors.Is(err, ErrDrop) {
		var pe *Error
		if errors.As(err, &pe) {
			return pe.EDE, pe.Text, true
		}
		return dns.ExtendedErrorCodeOther, "", true
	}
	o := &r.Outcome
	return o.EDE, o.EDEText, o.HasEDE
}

// ErrorReply builds the answer a listener sends for err, a non-nil error
// that is not ErrDrop: the RCODE and EDE of the first *Error in its chain,
// or SERVFAIL with EDE 0 (Other Error) otherwise. The EDE option is only
// added when the query had EDNS, as RFC 8914 §3 requires. Its EXTRA-TEXT
// is the Error's Text only: causes stay in the logs, since they may name
// upstream addresses a client has no business seeing.
func ErrorReply(query *dns.Msg, err error) *dns.Msg {
	rcode, ede, text := dns.RcodeServerFailure, uint16(dns.ExtendedErrorCodeOther), ""
	var pe *Error
	if errors.As(err, &pe) {
		rcode, ede, text = pe.rcode(), pe.EDE, pe.Text
	}
	m := new(dns.Msg)
	m.SetRcode(query, rcode)
	m.RecursionAvailable = true
	if qopt := query.IsEdns0(); qopt != nil {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(1232)
		opt.SetDo(qopt.Do())
		if len(text) > 200 {
			text = text[:200]
		}
		opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: ede, ExtraText: text})
		m.Extra = append(m.Extra, opt)
	}
	return m
}

// ECSMode is what to do with EDNS Client Subnet (RFC 7871) for the query
// sent upstream.
type ECSMode uint8

// ECS modes.
const (
	// ECSDefault leaves it to the configuration's default for the
	// listener kind.
	ECSDefault ECSMode = iota
	// ECSStrip sends no client subnet.
	ECSStrip
	// ECSPass forwards the subnet the client sent, if any.
	ECSPass
	// ECSAdd sends the client's source address cut to V4Bits or V6Bits,
	// unless the client sent a subnet, which is passed.
	ECSAdd
	// ECSReplace sends Prefix if valid, else the client's source address
	// cut to V4Bits or V6Bits, whatever the client sent.
	ECSReplace
)

var ecsModeNames = [...]string{"default", "strip", "pass", "add", "replace"}

func (m ECSMode) String() string {
	if int(m) < len(ecsModeNames) {
		return ecsModeNames[m]
	}
	return fmt.Sprintf("ecs(%d)", uint8(m))
}

// ECSAction is a decision on the client subnet sent upstream. Zero bits
// take the defaults (/24 for IPv4, /56 for IPv6).
type ECSAction struct {
	Mode           ECSMode
	V4Bits, V6Bits uint8
	Prefix         netip.Prefix
}
