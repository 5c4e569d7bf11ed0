package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/internal/batch"
	"github.com/dnsedge/dnsedge/internal/rawio"
	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// Defaults of a UDP exchanger's socket pool.
const (
	// DefaultUDPSockets is how many connected sockets a UDP exchanger
	// keeps open to its address.
	DefaultUDPSockets = 4
	// DefaultUDPSocketQueries is how many queries a socket carries
	// before it is retired and another, on a new random port, takes its
	// place.
	DefaultUDPSocketQueries = 256
	// DefaultUDPSocketAge is how long a socket is used at most.
	DefaultUDPSocketAge = 10 * time.Second
)

// udpReadBuf is the size of a read buffer: above the EDNS buffer size
// dnsedge asks for (EDNSBufferSize), so that an answer only cut by an
// upstream ignoring it is longer. Such an answer is read as truncated
// (TC set), and the race asks again over TCP.
const udpReadBuf = 4096

// udpBatch is how many datagrams one read takes at most (recvmmsg).
const udpBatch = 8

// udpPool carries the queries of one UDP exchanger over a few connected
// sockets that many queries share, told apart by their message IDs: a
// socket is opened once per DefaultUDPSocketQueries queries instead of
// once per query. Against spoofed answers (RFC 5452) every query still
// has a random ID, unique among the queries in flight on its socket, and
// a random source port among the pool's: the kernel picks each socket's
// port at random when it connects, and a socket is retired after a
// bounded number of queries and seconds, so that a port an attacker
// learns is soon closed. A socket accepts datagrams from the upstream's
// address only (it is connected), and an answer must carry the query's
// ID and question.
//
// Each socket has a reader goroutine that reads datagrams in batches,
// matches each to the query in flight with its ID and hands the parsed
// reply over. A retired socket is replaced in the background and closed
// when its last query ends.
type udpPool struct {
	addr     netip.AddrPort
	network  string
	maxUses  int
	maxAge   time.Duration
	now      func() time.Time
	mu       sync.Mutex
	slots    []*udpSock // nil while a replacement is dialled
	dialling []bool
	closed   bool
	wg       sync.WaitGroup
	// open has every socket not closed yet, in the slots or retired with
	// queries in flight, so that close can end them all. Its own lock
	// nests inside a socket's.
	openMu sync.Mutex
	open   map[*udpSock]struct{}
}

type udpSock struct {
	pool *udpPool
	conn *net.UDPConn
	// bc reads conn in batches and w writes it, with system calls the
	// scheduler is not told of (internal/rawio): at a low rate a call
	// it is told of wakes its monitor thread.
	bc      rawio.Batcher
	w       net.Conn
	born    time.Time
	uses    int // under pool.mu
	mu      sync.Mutex
	waiting map[uint16]*udpWait
	retired bool // no new queries; closed when waiting empties
	dead    bool // closed
}

func newUDPPool(p pinnedAddr) *udpPool {
	return &udpPool{
		addr:     p.addr,
		network:  p.network,
		maxUses:  DefaultUDPSocketQueries,
		maxAge:   DefaultUDPSocketAge,
		now:      time.Now,
		slots:    make([]*udpSock, DefaultUDPSockets),
		dialling: make([]bool, DefaultUDPSockets),
		open:     make(map[*udpSock]struct{}),
	}
}

// errPoolClosed is what exchanges get once the pool is closed.
var errPoolClosed = net.ErrClosed

// acquire returns a socket for one query: a live one picked at random
// among the pool's. A socket that has carried its share of queries or
// reached its age is retired and a replacement is dialled in the
// background; only when no socket is open at all is one dialled here.
// With last set, the socket is to be retired once the query is
// registered on it: it was worn out, or it is not kept, but no other was
// open.
func (pl *udpPool) acquire() (s *udpSock, last bool, err error) {
	pl.mu.Lock()
	if pl.closed {
		pl.mu.Unlock()
		return nil, false, errPoolClosed
	}
	now := pl.now()
	start := rand.IntN(len(pl.slots))
	var worn []*udpSock
	empty, live := -1, 0
	for k := range pl.slots {
		i := (start + k) % len(pl.slots)
		x := pl.slots[i]
		if x == nil {
			if empty < 0 && !pl.dialling[i] {
				empty = i
			}
			continue
		}
		if s != nil {
			live++
			continue
		}
		x.uses++
		if x.uses <= pl.maxUses && now.Sub(x.born) < pl.maxAge {
			s = x
			live++
			continue
		}
		// Worn out: no more queries; its successor is dialled off the
		// query path.
		pl.slots[i] = nil
		pl.replace(i)
		worn = append(worn, x)
	}
	// The pool fills one socket at a time, in the background, once one
	// is open.
	if empty >= 0 && (live > 0 || len(worn) > 0) {
		pl.replace(empty)
	}
	pl.mu.Unlock()
	if s == nil && len(worn) > 0 {
		s, last, worn = worn[len(worn)-1], true, worn[:len(worn)-1]
	}
	for _, x := range worn {
		x.retire()
	}
	if s != nil {
		return s, last, nil
	}
	// Nothing open (the first query, or every dial failed): dial here.
	s, err = pl.dial()
	if err != nil {
		return nil, false, err
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.closed {
		s.retire()
		return nil, false, errPoolClosed
	}
	s.uses = 1
	for i, old := range pl.slots {
		if old == nil && !pl.dialling[i] {
			pl.slots[i] = s
			return s, false, nil
		}
	}
	return s, true, nil // every slot is being refilled: this one serves one query
}

// replace dials a socket for empty slot i in the background, unless one
// is being dialled. pl.mu is held.
func (pl *udpPool) replace(i int) {
	if pl.dialling[i] || pl.closed {
		return
	}
	pl.dialling[i] = true
	pl.wg.Add(1)
	go func() {
		defer pl.wg.Done()
		s, err := pl.dial()
		pl.mu.Lock()
		defer pl.mu.Unlock()
		pl.dialling[i] = false
		if err != nil {
			return // the slot stays empty; the next query tries again
		}
		if pl.closed || pl.slots[i] != nil {
			s.retire()
			return
		}
		pl.slots[i] = s
	}()
}

// dial opens a connected socket on a port the kernel picks at random,
// and starts its reader.
func (pl *udpPool) dial() (*udpSock, error) {
	c, err := net.DialUDP(pl.network, nil, net.UDPAddrFromAddrPort(pl.addr))
	if err != nil {
		return nil, err
	}
	bc, err := rawio.NewBatcher(c, pl.addr.Addr().Is6())
	if err != nil {
		c.Close()
		return nil, err
	}
	s := &udpSock{pool: pl, conn: c, bc: bc, w: rawio.Datagram(c), born: pl.now(), waiting: make(map[uint16]*udpWait)}
	pl.openMu.Lock()
	pl.open[s] = struct{}{}
	pl.openMu.Unlock()
	pl.wg.Add(1)
	go s.read()
	return s, nil
}

// close retires every open socket, in the slots or already retired, and
// ends the queries in flight on them, which closes them.
func (pl *udpPool) close() {
	pl.mu.Lock()
	if pl.closed {
		pl.mu.Unlock()
		return
	}
	pl.closed = true
	clear(pl.slots)
	pl.mu.Unlock()
	pl.openMu.Lock()
	open := make([]*udpSock, 0, len(pl.open))
	for s := range pl.open {
		open = append(open, s)
	}
	pl.openMu.Unlock()
	for _, s := range open {
		s.retire()
		s.failAll(errPoolClosed)
	}
}

func (s *udpSock) retire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retired = true
	s.closeIfIdle()
}

// closeIfIdle closes a retired socket with nothing in flight. s.mu is
// held.
func (s *udpSock) closeIfIdle() {
	if s.retired && len(s.waiting) == 0 && !s.dead {
		s.dead = true
		s.conn.Close() // the reader's read fails and it returns
		s.pool.openMu.Lock()
		delete(s.pool.open, s)
		s.pool.openMu.Unlock()
	}
}

// failAll ends every query in flight on s with err.
func (s *udpSock) failAll(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, w := range s.waiting {
		delete(s.waiting, id)
		w.ch <- udpResult{err: err}
	}
	s.closeIfIdle()
}

// read is s's reader: it reads datagrams in batches until the socket is
// closed and hands each to the query in flight with its ID. An ICMP
// error (the port or host is unreachable) ends every query in flight on
// s: they all went to the same address.
func (s *udpSock) read() {
	defer s.pool.wg.Done()
	mp := readBufs.Get().(*[]ipv4.Message)
	defer putReadBufs(mp)
	msgs := *mp
	size := batch.Size{Max: len(msgs)}
	handle := func(n int) int {
		size.Took(n)
		for i := range msgs[:n] {
			pkt := msgs[i].Buffers[0][:msgs[i].N]
			if msgs[i].Flags&syscall.MSG_TRUNC != 0 && len(pkt) >= 4 {
				pkt[2] |= 0x02 // cut: take it as truncated
			}
			s.deliver(pkt)
		}
		return size.Next()
	}
	for {
		err := rawio.ReadLoop(s.bc, msgs, 0, size.Next(), handle)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if isICMPError(err) {
			s.failAll(err)
			continue
		}
		// Anything else would repeat: give the socket up.
		s.pool.drop(s)
		s.failAll(err)
		return
	}
}

// readBufs holds the read buffers of readers that returned, for the
// readers of the sockets that replace theirs: a socket is retired after a
// few hundred queries, and its buffers would cost more than its dial.
// What a reader delivers is unpacked or copied out of them (deliver).
var readBufs = sync.Pool{New: func() any {
	msgs := make([]ipv4.Message, udpBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, udpReadBuf)}
	}
	return &msgs
}}

func putReadBufs(mp *[]ipv4.Message) {
	for i := range *mp {
		m := &(*mp)[i]
		m.N, m.NN, m.Flags, m.Addr = 0, 0, 0, nil
	}
	readBufs.Put(mp)
}

func isICMPError(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTDOWN)
}

// drop takes s out of the pool's slots.
func (pl *udpPool) drop(s *udpSock) {
	pl.mu.Lock()
	for i, x := range pl.slots {
		if x == s {
			pl.slots[i] = nil
		}
	}
	pl.mu.Unlock()
	s.retire()
}

// deliver matches pkt to the query in flight with its ID. A datagram that
// does not parse, is not a response or carries another question is
// dropped (noted as the query's last bad datagram) and the query waits
// on; a reply whose TSIG does not verify ends the query as malformed.
func (s *udpSock) deliver(pkt []byte) {
	if len(pkt) < 12 {
		return
	}
	id := binary.BigEndian.Uint16(pkt)
	s.mu.Lock()
	w := s.waiting[id]
	var mac string
	if w != nil {
		mac = w.mac // set under s.mu before the query is sent
	}
	s.mu.Unlock()
	if w == nil {
		// Late (its query timed out), a duplicate, or spoofed: on a
		// shared socket nothing tells them apart, so it counts against
		// no query.
		return
	}
	r, err := matchReply(pkt, id, w.q)
	if err != nil {
		s.mu.Lock()
		w.bad = err
		s.mu.Unlock()
		return
	}
	res := udpResult{r: r}
	if err := w.p.checkReply(pkt, r, mac); err != nil {
		res = udpResult{err: err}
	} else if w.keep && !r.Truncated {
		// Not truncated, so it unpacked whole (see matchReply): the
		// bytes are the message r is.
		res.wire = append([]byte(nil), pkt...)
		binary.BigEndian.PutUint16(res.wire, r.Id)
	}
	s.mu.Lock()
	if s.waiting[id] == w {
		delete(s.waiting, id)
		w.ch <- res
	}
	s.mu.Unlock()
}

// exchange sends q over a pooled socket and waits for its reply, ctx
// bounding the wait. Errors are classed as UDP.Exchange documents. When
// wire is not nil it is q packed (see packPrepared), and is sent with
// the socket's ID in place of packing q. With keep, the reply's wire form
// comes back too when it is whole (see wireExchanger). A signing path
// always packs and signs q itself.
func (pl *udpPool) exchange(ctx context.Context, p pinnedAddr, q *dns.Msg, wire []byte, keep bool) (*dns.Msg, []byte, error) {
	if p.signer != nil {
		wire = nil
	}
	var (
		s   *udpSock
		w   *udpWait
		err error
	)
	// A socket handed out by acquire can be retired and closed by another
	// query's acquire before this one registers on it (it had nothing in
	// flight yet): then take another. Only a closed pool ends the query.
	for range 4 {
		var last bool
		s, last, err = pl.acquire()
		if err != nil {
			if errors.Is(err, errPoolClosed) {
				return nil, nil, p.fail(ClassCanceled, err)
			}
			return nil, nil, p.fail(ClassNetwork, fmt.Errorf("dial: %w", err))
		}
		w, err = s.register(q, p, keep)
		if last {
			s.retire()
		}
		if err == nil || !errors.Is(err, errPoolClosed) {
			break
		}
	}
	if err != nil {
		return nil, nil, p.fail(ClassCanceled, err)
	}
	bp := getMsgBuf()
	var out []byte
	if wire != nil {
		out = append((*bp)[:0], wire...)
		binary.BigEndian.PutUint16(out, w.id)
	} else {
		var mac string
		out, mac, err = p.packQuery(upstreamQuery(q, w.id), *bp)
		if err != nil {
			putMsgBuf(bp)
			s.done(w)
			// The query never left: not the path's fault.
			return nil, nil, p.fail(ClassCanceled, fmt.Errorf("pack query: %w", err))
		}
		if mac != "" {
			s.mu.Lock()
			w.mac = mac
			s.mu.Unlock()
		}
	}
	_, err = s.w.Write(out)
	putMsgBuf(bp)
	if err != nil {
		s.done(w)
		if errors.Is(err, net.ErrClosed) {
			return nil, nil, p.fail(ClassCanceled, err)
		}
		return nil, nil, p.failIO(ctx, fmt.Errorf("write query: %w", err))
	}
	var res udpResult
	reuse := true // w may go back to waits once done with
	if ac, ok := ctx.(*attemptCtx); ok {
		// A race's attempt ends only at its deadline: a timer on the
		// wait itself ends it then, and the query waits on its one
		// channel, without a select and without ctx's Done channel and
		// timer.
		w.arm(s, ac.clock, until(ac.clock, ac.deadline))
		pipeline.Waits(ac.parent)
		res = <-w.ch
		reuse = w.timer.Stop()
	} else {
		select {
		case res = <-w.ch:
		case <-ctx.Done():
			res.expired = true
		}
	}
	if !res.expired {
		s.done(w)
		if reuse {
			w.release()
		}
		switch {
		case res.err == nil:
			return res.r, res.wire, nil
		case errors.Is(res.err, ErrBadSignature):
			return nil, nil, p.fail(ClassMalformed, fmt.Errorf("read reply: %w", res.err))
		case errors.Is(res.err, errPoolClosed):
			return nil, nil, p.fail(ClassCanceled, res.err)
		default:
			return nil, nil, p.fail(ClassNetwork, fmt.Errorf("read reply: %w", res.err))
		}
	}
	bad := s.done(w)
	err = ctx.Err()
	if err == nil {
		err = context.DeadlineExceeded // the wait's timer fired a little early
	}
	if bad != nil && !errors.Is(err, context.Canceled) {
		return nil, nil, p.fail(ClassMalformed, fmt.Errorf("read reply: only unusable packets before the deadline, last: %w", bad))
	}
	return nil, nil, p.failCtx(ctx, fmt.Errorf("read reply: %w", err))
}
