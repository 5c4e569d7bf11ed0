package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// doq is one DNS-over-QUIC connection (RFC 9250): each query gets its own
// bidirectional stream, carries a 2-byte length prefix and ID 0, and the
// client closes its send side after the query (§4.2).
type doq struct{ conn *quic.Conn }

func dialDoQ(ctx context.Context, addr string, tlsConf *tls.Config) (exchanger, error) {
	tc := tlsConf.Clone()
	tc.NextProtos = []string{"doq"}
	conn, err := quic.DialAddr(ctx, addr, tc, &quic.Config{KeepAlivePeriod: 0})
	if err != nil {
		return nil, err
	}
	return &doq{conn: conn}, nil
}

func (d *doq) exchange(ctx context.Context, q []byte) ([]byte, error) {
	s, err := d.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		s.SetDeadline(dl)
	}
	buf := make([]byte, 2+len(q))
	binary.BigEndian.PutUint16(buf, uint16(len(q)))
	copy(buf[2:], q)
	if _, err := s.Write(buf); err != nil {
		s.CancelRead(0)
		return nil, fmt.Errorf("write query: %w", err)
	}
	s.Close()
	var n [2]byte
	if _, err := io.ReadFull(s, n[:]); err != nil {
		s.CancelRead(0)
		return nil, fmt.Errorf("read length: %w", err)
	}
	ans := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(s, ans); err != nil {
		s.CancelRead(0)
		return nil, fmt.Errorf("read answer: %w", err)
	}
	return ans, nil
}

func (d *doq) close() { d.conn.CloseWithError(0, "") }

// doh3 is one DNS-over-HTTPS connection over HTTP/3: a Transport of its own
// keeps exactly one QUIC connection to the server. Queries are GETs with the
// dns parameter (RFC 8484 §4.1).
type doh3 struct {
	tr     *http3.Transport
	client *http.Client
	url    string
}

func dialDoH3(ctx context.Context, addr string, tlsConf *tls.Config) (exchanger, error) {
	tr := &http3.Transport{TLSClientConfig: tlsConf.Clone(), QUICConfig: &quic.Config{}}
	d := &doh3{tr: tr, client: &http.Client{Transport: tr}, url: "https://" + addr + "/dns-query?dns="}
	// Connect now, so the load starts on an open connection.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url+"AAABAAABAAAAAAAAAmgwBWJlbmNoBHRlc3QAAAEAAQ", nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		tr.Close()
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return d, nil
}

func (d *doh3) exchange(ctx context.Context, q []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url+base64.RawURLEncoding.EncodeToString(q), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/dns-message")
	return dohReply(d.client, req)
}

func (d *doh3) close() { d.tr.Close() }

// doh2 is one DNS-over-HTTPS connection over HTTP/2: a Transport of its
// own, so -c sets the connections. Queries are POSTs of the packed
// message (RFC 8484 §4.1). The transport asks again, on a new connection,
// the requests a server's GOAWAY says it did not process (RFC 9113 §6.8),
// so a server handing over to a new process loses none of them.
type doh2 struct {
	tr     *http.Transport
	client *http.Client
	url    string
}

func dialDoH2(ctx context.Context, addr string, tlsConf *tls.Config) (exchanger, error) {
	tc := tlsConf.Clone()
	tc.NextProtos = []string{"h2"}
	// One dial at a time (for HTTP/2 MaxConnsPerHost bounds the dials in
	// progress): without it, a GOAWAY makes every waiting request dial a
	// connection of its own, as no browser or stub does, and a server's
	// cap on connections per client address resets the surplus.
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}
	d := &doh2{tr: tr, client: &http.Client{Transport: tr}, url: "https://" + addr + "/dns-query"}
	// Connect now, so the load starts on an open connection, and make
	// sure it is HTTP/2: dnsperf-style numbers over HTTP/1.1 would mislead.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url+"?dns=AAABAAABAAAAAAAAAmgwBWJlbmNoBHRlc3QAAAEAAQ", nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		tr.CloseIdleConnections()
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("server answered over %s, not HTTP/2", resp.Proto)
	}
	return d, nil
}

func (d *doh2) exchange(ctx context.Context, q []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(q))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/dns-message")
	req.Header.Set("Accept", "application/dns-message")
	return dohReply(d.client, req)
}

func (d *doh2) close() { d.tr.CloseIdleConnections() }

// dohReply sends req, a DNS-over-HTTPS query, and returns the DNS message
// of a 200 answer.
func dohReply(c *http.Client, req *http.Request) ([]byte, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := io.Copy(&b, io.LimitReader(resp.Body, 65536)); err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("http status %d", resp.StatusCode)
	}
	return b.Bytes(), nil
}
