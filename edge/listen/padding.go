package listen

import "github.com/miekg/dns"

// PaddingBlock is the block size replies on encrypted listeners are padded
// to: RFC 8467 §4.1 recommends 468 octets for responses.
const PaddingBlock = 468

// padded returns r with an EDNS(0) Padding option (RFC 7830) that brings
// its wire length to a multiple of PaddingBlock, so an observer of the
// encrypted stream learns less from the size of an answer. Replies without
// an OPT (the query had no EDNS) are returned as they are: RFC 7830 §3
// puts padding in the OPT, and a client that sent none must not get one.
// A padding option already in the OPT is replaced. r's Extra slice and OPT
// are copied, never modified, since they may be shared with a cache.
func padded(r *dns.Msg) *dns.Msg {
	i := len(r.Extra) - 1
	for ; i >= 0; i-- {
		if r.Extra[i].Header().Rrtype == dns.TypeOPT {
			break
		}
	}
	if i < 0 {
		return r
	}
	old := r.Extra[i].(*dns.OPT)
	opt := &dns.OPT{Hdr: old.Hdr, Option: make([]dns.EDNS0, 0, len(old.Option)+1)}
	for _, o := range old.Option {
		if o.Option() != dns.EDNS0PADDING {
			opt.Option = append(opt.Option, o)
		}
	}
	pad := &dns.EDNS0_PADDING{}
	opt.Option = append(opt.Option, pad)
	m := *r
	m.Extra = append(make([]dns.RR, 0, len(r.Extra)), r.Extra...)
	m.Extra[i] = opt
	// Len counts the option's 4-byte header with an empty payload.
	if n := m.Len() % PaddingBlock; n != 0 {
		pad.Padding = make([]byte, PaddingBlock-n)
	}
	return &m
}
