package middleware

import (
	"context"
	"net/netip"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/miekg/dns"
)

// ECS decides the client subnet (RFC 7871) a query is forwarded with:
// from policy's req.ECSAction, or when that is ECSDefault the configured
// mode for the listener kind, it sets req.ECS, which the cache keys on
// and the forward handler sends. It runs after policy and before the
// cache.
//
// An ECS is safe for concurrent use.
type ECS struct {
	deflt, doh     pipeline.ECSMode
	v4Bits, v6Bits uint8
}

// NewECS returns the stage for cfg.
func NewECS(cfg ECSConfig) (*ECS, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d, _ := ParseECSMode(cfg.Default)
	h, _ := ParseECSMode(cfg.DoH)
	return &ECS{deflt: d, doh: h, v4Bits: uint8(cfg.V4Bits), v6Bits: uint8(cfg.V6Bits)}, nil
}

// Middleware sets req.ECS before calling next.
func (e *ECS) Middleware(next pipeline.Handler) pipeline.Handler {
	return pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		req.ECS = e.Subnet(req)
		return next.ServeDNS(ctx, req)
	})
}

// Subnet returns the subnet req is to be forwarded with, invalid for none:
//
//   - strip: none;
//   - pass: the one the client sent (a source prefix of 0 included: the
//     client asks that no subnet be used, RFC 7871 §7.1.2), masked;
//   - add: the client's, or when it sent none its source address cut to
//     the action's bits or the configured ones;
//   - replace: the action's Prefix when valid, else the source address
//     cut, whatever the client sent.
//
// dnsedge's own queries (KindInternal) and queries without a client
// address get none added.
func (e *ECS) Subnet(req *pipeline.Request) netip.Prefix {
	a := req.ECSAction
	mode := a.Mode
	if mode == pipeline.ECSDefault {
		mode = e.deflt
		if req.Listener == pipeline.KindDoH {
			mode = e.doh
		}
	}
	switch mode {
	case pipeline.ECSPass:
		return clientSubnet(req.Msg)
	case pipeline.ECSAdd:
		if p := clientSubnet(req.Msg); p.IsValid() {
			return p
		}
		return e.cut(req, a)
	case pipeline.ECSReplace:
		if a.Prefix.IsValid() {
			return a.Prefix.Masked()
		}
		return e.cut(req, a)
	}
	return netip.Prefix{}
}

// cut returns the client's address cut to the action's or the configured
// prefix length.
func (e *ECS) cut(req *pipeline.Request, a pipeline.ECSAction) netip.Prefix {
	if req.Listener == pipeline.KindInternal || !req.Client.IsValid() {
		return netip.Prefix{}
	}
	addr := req.Client.Addr().Unmap().WithZone("")
	bits := a.V6Bits
	if bits == 0 {
		bits = e.v6Bits
	}
	if addr.Is4() {
		bits = a.V4Bits
		if bits == 0 {
			bits = e.v4Bits
		}
	}
	p, err := addr.Prefix(int(min(int(bits), addr.BitLen())))
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// clientSubnet returns the subnet of the ECS option of m, masked to its
// source prefix length, invalid when m has none or it is malformed.
func clientSubnet(m *dns.Msg) netip.Prefix {
	opt := m.IsEdns0()
	if opt == nil {
		return netip.Prefix{}
	}
	for _, o := range opt.Option {
		s, ok := o.(*dns.EDNS0_SUBNET)
		if !ok {
			continue
		}
		a, ok := netip.AddrFromSlice(s.Address)
		if !ok {
			return netip.Prefix{}
		}
		switch s.Family {
		case 1:
			a = a.Unmap()
			if !a.Is4() {
				return netip.Prefix{}
			}
		case 2:
			if !a.Is6() {
				return netip.Prefix{}
			}
		default:
			return netip.Prefix{}
		}
		p, err := a.Prefix(int(s.SourceNetmask))
		if err != nil {
			return netip.Prefix{}
		}
		return p
	}
	return netip.Prefix{}
}
