package listen

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// doqFrameError is how a stream broke the DoQ framing of RFC 9250 §4.2.
// Each is a protocol error that closes the connection with
// DOQ_PROTOCOL_ERROR (§4.3.3).
type doqFrameError uint8

const (
	errDoQTruncated doqFrameError = iota + 1 // STREAM FIN before the whole message
	errDoQEmpty                              // a length prefix of 0
	errDoQMessageID                          // a Message ID other than 0 (§4.2.1)
	errDoQTrailing                           // data after the message: a second query or junk
)

func (e doqFrameError) Error() string {
	return [...]string{"", "stream closed before the full message", "zero-length message",
		"non-zero message id", "data after the message"}[e]
}

// doqMaxEmptyReads bounds the reads returning nothing that readDoQQuery
// accepts while waiting for the STREAM FIN.
const doqMaxEmptyReads = 100

// readDoQQuery reads the one query of a DoQ stream (RFC 9250 §4.2): a
// 2-byte length, that many bytes of message, then the end of the stream.
// It asks alloc for a buffer of the declared length only once the length
// is known, so a stream that stalls early holds none, and never asks for
// more than 65535 bytes. It returns the message (the first n bytes of
// alloc's buffer), a doqFrameError when the stream breaks the framing, or
// the reader's error (such as a timeout or a reset) otherwise.
func readDoQQuery(r io.Reader, alloc func(n int) []byte) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, finErr(err)
	}
	n := int(hdr[0])<<8 | int(hdr[1])
	if n == 0 {
		return nil, errDoQEmpty
	}
	b := alloc(n)[:n]
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, finErr(err)
	}
	if n >= 2 && b[0]|b[1] != 0 {
		return nil, errDoQMessageID
	}
	var one [1]byte
	for range doqMaxEmptyReads {
		k, err := r.Read(one[:])
		switch {
		case k > 0:
			return nil, errDoQTrailing
		case err == io.EOF:
			return b, nil
		case err != nil:
			return nil, err
		}
	}
	return nil, io.ErrNoProgress
}

// finErr turns the end of a stream in the middle of a message into
// errDoQTruncated.
func finErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errDoQTruncated
	}
	return err
}

// replaySafe reports whether q may be answered from 0-RTT data, which an
// attacker can replay (RFC 9250 §4.5, RFC 8446 §8): a QUERY for anything
// but a zone transfer (AXFR, IXFR). Other opcodes are answered NOTIMP
// before this is asked.
func replaySafe(q *dns.Msg) bool {
	if q.Opcode != dns.OpcodeQuery || len(q.Question) != 1 {
		return false
	}
	switch q.Question[0].Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		return false
	}
	return true
}

// hasKeepalive reports whether q carries the edns-tcp-keepalive option,
// which RFC 9250 §5.5.2 forbids on DoQ.
func hasKeepalive(q *dns.Msg) bool {
	opt := q.IsEdns0()
	if opt == nil {
		return false
	}
	for _, o := range opt.Option {
		if o.Option() == dns.EDNS0TCPKEEPALIVE {
			return true
		}
	}
	return false
}

// serveStream reads and answers the query of stream s, which holds one of
// the listener's slots and whose read deadline is set. A stream that
// breaks the framing closes the connection with DOQ_PROTOCOL_ERROR; one
// that does not arrive whole in time, or whose client resets it, is reset
// with DOQ_REQUEST_CANCELLED.
func (l *DoQ) serveStream(dc *doqConn, s *quic.Stream) {
	defer l.release()
	defer dc.end()
	dc.track(s)
	if l.isClosed() {
		s.SetReadDeadline(time.Unix(1, 0)) // Close may have missed it
	}
	var buf *[]byte
	b, err := readDoQQuery(s, func(int) []byte {
		buf = getBuf()
		return *buf
	})
	dc.untrack(s)
	received := time.Now()
	if err != nil {
		if buf != nil {
			putBuf(buf)
		}
		l.streamFailed(dc, s, err)
		return
	}
	l.m.query()
	act, why := checkHeader(b)
	var q *dns.Msg
	if act == actServe {
		q, act = parseQuery(b)
	}
	if act == actDrop || act == actServe && hasKeepalive(q) {
		putBuf(buf)
		if act != actDrop {
			why = reasonProtocol
		}
		l.m.drop(why)
		l.protocolError(dc, "junk query: "+why.String())
		return
	}
	if act != actServe {
		out := getBufFor(2 + len(b)) // a refusal is never longer than the query
		out, r := inBuf(out, 2, reject(b, q, act, (*out)[2:]))
		putBuf(buf)
		l.write(s, r, out)
		dc.wrote.Store(time.Now().UnixNano())
		l.m.response(rejectRcode(act), false)
		return
	}
	if !replaySafe(q) && !dc.handshakeDone() {
		// RFC 9250 §4.5: queue what is not replay-safe until the handshake
		// proves the client is live. quic-go closes the connection when
		// the handshake does not complete within HandshakeTimeout.
		select {
		case <-dc.qc.HandshakeComplete():
		case <-dc.qc.Context().Done():
			putBuf(buf)
			return
		}
	}
	req := getRequest()
	*req = pipeline.Request{
		Msg:      q,
		Wire:     b,
		Client:   dc.client,
		Local:    dc.local,
		Listener: pipeline.KindDoQ,
		ClientID: dc.id,
		TLS:      dc.tlsState(),
		Received: received,
		MaxSize:  dns.MaxMsgSize,
	}
	out, obuf := l.answer(req, 2)
	putRequest(req)
	putBuf(buf) // lent as req.Wire until the reply was packed
	if out == nil {
		// The pipeline dropped the query: a stream must still end, and a
		// reset tells the client not to wait (RFC 9250 §4.3.3 forbids
		// leaving it open).
		s.CancelWrite(doqRequestCancelled)
		return
	}
	l.write(s, out, obuf)
	dc.wrote.Store(time.Now().UnixNano())
}

// streamFailed handles a stream whose query could not be read.
func (l *DoQ) streamFailed(dc *doqConn, s *quic.Stream, err error) {
	var fe doqFrameError
	if errors.As(err, &fe) {
		l.m.drop(reasonProtocol)
		l.protocolError(dc, fe.Error())
		return
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		l.log.Debug("doq query not received in time, resetting stream", "client", dc.client.String())
	} else {
		l.log.Debug("read doq stream", "client", dc.client.String(), "err", err)
	}
	s.CancelRead(doqRequestCancelled)
	s.CancelWrite(doqRequestCancelled)
}

// write sends b, which sits at (*buf)[2:], with its length prefix and the
// STREAM FIN (RFC 9250 §4.2), then gives buf back. A client that does not
// take the reply within WriteTimeout gets the stream reset.
func (l *DoQ) write(s *quic.Stream, b []byte, buf *[]byte) {
	defer putBuf(buf)
	frame := (*buf)[:2+len(b)]
	frame[0], frame[1] = byte(len(b)>>8), byte(len(b))
	s.SetWriteDeadline(time.Now().Add(l.cfg.WriteTimeout))
	if _, err := s.Write(frame); err != nil {
		l.log.Debug("write doq reply", "err", err)
		s.CancelWrite(doqRequestCancelled)
		return
	}
	s.Close()
}

// tlsState returns the TLS state of the connection, cached once the
// handshake is complete.
func (dc *doqConn) tlsState() *tls.ConnectionState {
	if st := dc.tls.Load(); st != nil {
		return st
	}
	st := dc.qc.ConnectionState().TLS
	if st.HandshakeComplete {
		dc.tls.Store(&st)
	}
	return &st
}

// handshakeDone reports whether the handshake of the connection is
// complete, so that nothing read on it can be a replay.
func (dc *doqConn) handshakeDone() bool {
	select {
	case <-dc.qc.HandshakeComplete():
		return true
	default:
		return false
	}
}

// track registers s as being read; untrack removes it.
func (dc *doqConn) track(s *quic.Stream) {
	dc.mu.Lock()
	dc.reading[s] = struct{}{}
	dc.mu.Unlock()
}

func (dc *doqConn) untrack(s *quic.Stream) {
	dc.mu.Lock()
	delete(dc.reading, s)
	dc.mu.Unlock()
}

// stopReading makes every pending read of the connection's streams fail
// at once.
func (dc *doqConn) stopReading() {
	past := time.Unix(1, 0)
	dc.mu.Lock()
	defer dc.mu.Unlock()
	for s := range dc.reading {
		s.SetReadDeadline(past)
	}
}
