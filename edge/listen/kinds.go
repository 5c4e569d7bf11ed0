package listen

import (
	"slices"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// A ListenerKind describes one kind of listener as the configuration
// names it. The configuration loader and the server read kinds from this
// table instead of switching over proto names of their own.
type ListenerKind struct {
	// Proto is the name in the configuration: udp, tcp, dot, doh, doq.
	Proto string
	// Kind is what queries of the kind carry in pipeline.Request.
	Kind pipeline.Kind
	// Encrypted: the listener speaks TLS or QUIC and needs a certificate
	// (a DoH listener with the h2c option excepted).
	Encrypted bool
	// Network is the socket every listener of the kind binds, "udp" or
	// "tcp"; a DoH listener with the http3 option binds "udp" as well.
	Network string
	// Options are the listener-only configuration keys the kind accepts.
	Options []string
}

// Listener-only configuration keys, as in ListenerKind.Options.
const (
	OptTLS        = "tls"
	OptServerName = "server_name"
	OptPadding    = "padding"
	OptPath       = "path"
	OptHTTP3      = "http3"
	OptH2C        = "h2c"
	OptSockets    = "sockets"
)

var listenerKinds = []ListenerKind{
	{Proto: "udp", Kind: pipeline.KindUDP, Network: "udp", Options: []string{OptSockets}},
	{Proto: "tcp", Kind: pipeline.KindTCP, Network: "tcp"},
	{Proto: "dot", Kind: pipeline.KindDoT, Encrypted: true, Network: "tcp",
		Options: []string{OptTLS, OptServerName, OptPadding}},
	{Proto: "doh", Kind: pipeline.KindDoH, Encrypted: true, Network: "tcp",
		Options: []string{OptTLS, OptServerName, OptPadding, OptPath, OptHTTP3, OptH2C}},
	{Proto: "doq", Kind: pipeline.KindDoQ, Encrypted: true, Network: "udp",
		Options: []string{OptTLS, OptServerName, OptPadding}},
}

// Kinds returns every listener kind, in the order the configuration
// documents them. The caller may modify the result.
func Kinds() []ListenerKind {
	out := slices.Clone(listenerKinds)
	for i := range out {
		out[i].Options = slices.Clone(out[i].Options)
	}
	return out
}

// LookupKind returns the kind named proto.
func LookupKind(proto string) (ListenerKind, bool) {
	for _, k := range listenerKinds {
		if k.Proto == proto {
			k.Options = slices.Clone(k.Options)
			return k, true
		}
	}
	return ListenerKind{}, false
}

// Networks returns the sockets a listener of the kind binds: Network,
// and udp too for HTTP/3.
func (k ListenerKind) Networks(http3 bool) []string {
	if http3 && k.Accepts(OptHTTP3) && k.Network != "udp" {
		return []string{k.Network, "udp"}
	}
	return []string{k.Network}
}

// Accepts reports whether the kind takes the listener-only key opt.
func (k ListenerKind) Accepts(opt string) bool { return slices.Contains(k.Options, opt) }

// KindsWith returns the protos that accept the listener-only key opt, in
// table order.
func KindsWith(opt string) []string {
	var names []string
	for _, k := range listenerKinds {
		if k.Accepts(opt) {
			names = append(names, k.Proto)
		}
	}
	return names
}

// KindNames returns every proto, in table order.
func KindNames() []string {
	names := make([]string, len(listenerKinds))
	for i, k := range listenerKinds {
		names[i] = k.Proto
	}
	return names
}
