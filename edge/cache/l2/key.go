package l2

import "encoding/binary"

// SchemaVersion is part of every key: a dnsedge that stores values in
// another layout uses another version, so that instances of both kinds
// sharing one Redis never read each other's values.
const SchemaVersion = "v1"

// AppendKey appends to dst the Redis key of an answer stored under the
// cache key ckey for tenant: the namespace, the schema version, the
// tenant (its length in two bytes, then its bytes) and the cache key,
// which holds the lower-cased wire name, QTYPE, QCLASS, the DO and CD
// bits, the ECS prefix the answer is scoped to (only when the scope is
// above 0), the tags and the route (see the cache's appendKey). Every
// part is self-delimiting, so no two different tuples share a key.
func AppendKey(dst []byte, namespace, tenant string, ckey []byte) []byte {
	dst = append(dst, namespace...)
	dst = append(dst, ':')
	dst = append(dst, SchemaVersion...)
	dst = append(dst, ':')
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(tenant)))
	dst = append(dst, tenant...)
	return append(dst, ckey...)
}
