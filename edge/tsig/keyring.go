package tsig

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// Keyring holds the keys of a Config and a clock. It verifies signed
// queries, signs replies and signs queries to upstreams. It is immutable
// and safe for concurrent use.
type Keyring struct {
	keys  map[string]*key // by canonical name
	fudge uint16
	now   func() time.Time
}

// key is one key, ready to use.
type key struct {
	name   string // canonical
	alg    string // miekg/dns name, canonical ("hmac-sha256.")
	secret []byte
	size   int // MAC size in bytes
}

// New builds the keyring of cfg, which must have passed Validate. now is
// the clock signatures are checked and made with; nil means time.Now.
func New(cfg Config, now func() time.Time) (*Keyring, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tsig: %w", err)
	}
	cfg = cfg.WithDefaults()
	if now == nil {
		now = time.Now
	}
	kr := &Keyring{keys: make(map[string]*key, len(cfg.Keys)), fudge: uint16(cfg.Fudge / time.Second), now: now}
	for _, k := range cfg.Keys {
		raw, _ := decodeSecret(k.Secret)
		alg := algorithms[strings.ToLower(k.Algorithm)]
		kk := &key{name: dns.CanonicalName(k.Name), alg: alg, secret: raw}
		kk.size = kk.hash().Size()
		kr.keys[kk.name] = kk
	}
	return kr, nil
}

// Has reports whether the keyring holds a key of that name.
func (kr *Keyring) Has(name string) bool {
	_, ok := kr.keys[dns.CanonicalName(name)]
	return ok
}

func (k *key) hash() hash.Hash {
	switch k.alg {
	case dns.HmacSHA1:
		return hmac.New(sha1.New, k.secret)
	case dns.HmacSHA512:
		return hmac.New(sha512.New, k.secret)
	}
	return hmac.New(sha256.New, k.secret)
}

// lookup returns the key a TSIG record names, nil when the keyring has
// no key of that name and algorithm (both make BADKEY, RFC 8945
// §5.2.1).
func (kr *Keyring) lookup(t *dns.TSIG) *key {
	k := kr.keys[dns.CanonicalName(t.Hdr.Name)]
	if k == nil || dns.CanonicalName(t.Algorithm) != k.alg {
		return nil
	}
	return k
}

// provider is a dns.TsigProvider over one key. It records whether the
// MAC verified, so that the time check can be made on the keyring's
// clock rather than miekg/dns's.
type provider struct {
	k      *key
	macOK  bool
	called bool
}

func (p *provider) Generate(msg []byte, t *dns.TSIG) ([]byte, error) {
	if p.k == nil {
		return nil, dns.ErrSecret
	}
	h := p.k.hash()
	h.Write(msg)
	return h.Sum(nil), nil
}

func (p *provider) Verify(msg []byte, t *dns.TSIG) error {
	p.called = true
	mac, err := hex.DecodeString(t.MAC)
	if err != nil {
		return dns.ErrSig
	}
	want, err := p.Generate(msg, t)
	if err != nil {
		return err
	}
	// A truncated MAC (RFC 8945 §5.2.2.1) is not accepted: it fails
	// here and answers BADSIG.
	if !hmac.Equal(want, mac) {
		return dns.ErrSig
	}
	p.macOK = true
	return nil
}

// Result is what Verify found about one message.
type Result struct {
	State pipeline.TSIGState
	// TSIG is the message's TSIG record, nil when it had none.
	TSIG *dns.TSIG
}

// Verify checks the TSIG of m, whose wire form is wire, in the order of
// RFC 8945 §5.2: the key (BADKEY), the MAC (BADSIG), then the time
// (BADTIME). requestMAC is the MAC of the query when m is a reply, ""
// for a query. wire is not modified. A message without a TSIG record is
// TSIGNone; one whose wire form is unknown (nil) cannot be verified and
// is TSIGBadSig.
func (kr *Keyring) Verify(wire []byte, m *dns.Msg, requestMAC string) Result {
	t := m.IsTsig()
	if t == nil {
		return Result{State: pipeline.TSIGNone}
	}
	r := Result{TSIG: t}
	k := kr.lookup(t)
	if k == nil {
		r.State = pipeline.TSIGBadKey
		return r
	}
	if len(wire) == 0 {
		r.State = pipeline.TSIGBadSig
		return r
	}
	// miekg/dns rewrites the ID and ARCOUNT in place: work on a copy.
	buf := slices.Clone(wire)
	p := &provider{k: k}
	// The time check miekg/dns makes is on the system clock; the
	// keyring's own is below.
	_ = dns.TsigVerifyWithProvider(buf, p, requestMAC, false)
	if !p.macOK {
		r.State = pipeline.TSIGBadSig
		return r
	}
	now := kr.now().Unix()
	d := now - int64(t.TimeSigned)
	if d < 0 {
		d = -d
	}
	if d > int64(t.Fudge) {
		r.State = pipeline.TSIGBadTime
		return r
	}
	r.State = pipeline.TSIGVerified
	return r
}

// ErrUnknownKey is returned when asked to sign with a key the keyring
// does not hold.
var ErrUnknownKey = errors.New("tsig: unknown key")

// SignQuery returns the wire form of q signed with the named key and the
// MAC, which the reply must be verified with (VerifyReply). q is not
// modified.
func (kr *Keyring) SignQuery(q *dns.Msg, keyName string) (wire []byte, mac string, err error) {
	k := kr.keys[dns.CanonicalName(keyName)]
	if k == nil {
		return nil, "", fmt.Errorf("%w %q", ErrUnknownKey, keyName)
	}
	m := *q
	m.Extra = stripTSIG(q.Extra)
	m.Extra = append(slices.Clip(m.Extra), &dns.TSIG{
		Hdr:        dns.RR_Header{Name: k.name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm:  k.alg,
		Fudge:      kr.fudge,
		TimeSigned: uint64(kr.now().Unix()),
		OrigId:     q.Id,
	})
	return dns.TsigGenerateWithProvider(&m, &provider{k: k}, "", false)
}

// Reply verification failures.
var (
	ErrReplyUnsigned = errors.New("tsig: reply is not signed")
	ErrReplyBad      = errors.New("tsig: reply signature does not verify")
)

// VerifyReply checks that reply, whose wire form is wire, is signed with
// the named key over the query MAC requestMAC, within the fudge window
// (RFC 8945 §5.4).
func (kr *Keyring) VerifyReply(wire []byte, reply *dns.Msg, keyName, requestMAC string) error {
	t := reply.IsTsig()
	if t == nil {
		return ErrReplyUnsigned
	}
	if dns.CanonicalName(t.Hdr.Name) != dns.CanonicalName(keyName) {
		return fmt.Errorf("%w: signed with key %q, not %q", ErrReplyBad, t.Hdr.Name, keyName)
	}
	if r := kr.Verify(wire, reply, requestMAC); r.State != pipeline.TSIGVerified {
		return fmt.Errorf("%w: %s (TSIG error %s)", ErrReplyBad, r.State, dns.RcodeToString[int(t.Error)])
	}
	return nil
}

// stripTSIG returns extra without a trailing TSIG record.
func stripTSIG(extra []dns.RR) []dns.RR {
	if n := len(extra); n > 0 && extra[n-1].Header().Rrtype == dns.TypeTSIG {
		return extra[:n-1]
	}
	return extra
}

// Upstream returns a transport.Signer over the named key: queries to an
// upstream signed with it, replies verified.
func (kr *Keyring) Upstream(name string) (*UpstreamSigner, error) {
	if !kr.Has(name) {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, name)
	}
	return &UpstreamSigner{kr: kr, name: dns.CanonicalName(name)}, nil
}

// UpstreamSigner signs the queries to one upstream with one key
// (transport.Signer). It is safe for concurrent use.
type UpstreamSigner struct {
	kr   *Keyring
	name string
}

// SignQuery signs q with the key.
func (s *UpstreamSigner) SignQuery(q *dns.Msg) ([]byte, string, error) {
	return s.kr.SignQuery(q, s.name)
}

// VerifyReply checks that reply is signed with the key over mac.
func (s *UpstreamSigner) VerifyReply(wire []byte, reply *dns.Msg, mac string) error {
	return s.kr.VerifyReply(wire, reply, s.name, mac)
}
