package listen

import "github.com/quic-go/quic-go"

// QUICKeys are the keys of a server's QUIC transports, held by the server
// so that every QUIC listener shares them and a process that takes them
// over from another keeps that one's promises to its clients:
//
//   - the stateless reset key (RFC 9000 §10.3): a client whose connection
//     the process does not know (it belonged to a process that exited)
//     gets a stateless reset it can verify, and gives up at once instead
//     of waiting for its idle timeout;
//   - the token key (RFC 9000 §8.1.3): address validation tokens issued
//     in NEW_TOKEN frames are accepted by every process holding it.
//
// 0-RTT and session resumption over QUIC rest on the TLS session ticket
// keys (edgetls.TicketKeys). A QUICKeys must not change once a listener
// uses it.
type QUICKeys struct {
	Reset quic.StatelessResetKey
	Token quic.TokenGeneratorKey
}

// transport gives t the keys of k and returns it; with
// a nil k quic-go picks a token key and sends no stateless resets.
func (k *QUICKeys) transport(t *quic.Transport) *quic.Transport {
	if k != nil {
		reset, token := k.Reset, k.Token
		t.StatelessResetKey, t.TokenGeneratorKey = &reset, &token
	}
	return t
}
