package l2

import "encoding/binary"

// SchemaVersion is part of every key: a dnsedge that stores values in
// another layout uses another version, so that instances of both kinds
// sharing one Redis never read each other's values.
const SchemaVersion = "v1"

// KeyPrefix returns what every key starts with: the namespace, the
// schema version and validation, which names the DNSSEC validation the
// instance applies ("off", or a fingerprint of its settings), so that an
// instance that validates never reads an answer stored by one that
// validates otherwise or not at all.
func KeyPrefix(namespace, validation string) string {
	return namespace + ":" + SchemaVersion + ":" + validation + ":"
}

// AppendKey appends to dst the Redis key of an answer stored under the
// cache key ckey for tenant: the prefix (see KeyPrefix), the tenant (its
// length in two bytes, then its bytes) and the cache key, which holds
// the lower-cased wire name, QTYPE, QCLASS, the DO and CD bits, the ECS
// prefix the answer is scoped to (only when the scope is above 0), the
// tags and the route (see the cache's appendKey). Every part is
// self-delimiting, so no two different tuples share a key.
func AppendKey(dst []byte, prefix, tenant string, ckey []byte) []byte {
	dst = append(dst, prefix...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(tenant)))
	dst = append(dst, tenant...)
	return append(dst, ckey...)
}
