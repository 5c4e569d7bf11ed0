#!/usr/bin/env bash
# Load benchmark: dnsedge against dnsdist, unbound and CoreDNS, each a caching
# forwarder in front of the same BIND named, measured with dnsperf. Writes
# BENCHMARKS.md at the repository root and keeps raw output in bench/out/.
# The encrypted listeners are measured on dnsedge, dnsdist and unbound: DoT
# with dnsperf, DoH over HTTP/2 with h2load, DoQ and DoH over HTTP/3 (dnsedge
# only: dnsdist 1.7 and unbound 1.17 have neither) with bench/quicload. A
# last phase starts
# every server once more with a cache for a million entries, fills it, and
# reports the growth of its RSS per cached entry. A fleet phase (dnsedge
# only) compares a Consul-backed answer with a static-zone one, and L1 hits,
# L2 hits from a shared redis-server and upstream misses, and measures
# misses with Redis hung (SIGSTOP) and dead (SIGKILL).
#
# Everything binds 127.0.0.1 on ports picked at run time; every load run is
# bounded by its own duration flag and by timeout(1).
#
# Knobs:
#   BENCH_SECONDS          seconds per dnsperf run (default 10)
#   BENCH_ONLY             space-separated servers to run, from
#                          "dnsedge dnsdist unbound coredns" (default: all)
#   BENCH_COREDNS_VERSION  CoreDNS module version to build (default below)
#   BENCH_CACHE            where the CoreDNS binary is cached between runs
#   BENCH_NICE             nice value for the servers, named and dnsperf
#                          (default 0; e.g. -10 to favour the benchmark over
#                          background work on a shared machine)
#   BENCH_GOMAXPROCS       GOMAXPROCS of the Go servers (dnsedge, CoreDNS);
#                          empty (default): Go's own choice, 1 on the one
#                          pinned core; 2 is what Go picks in a container
#                          with a CPU limit of 2 or less
#   BENCH_ENCRYPTED        1 (default) adds the DoT, DoH, DoH3 and DoQ rows and
#                          the idle-DoT-connection memory line; 0 skips them
#   BENCH_IDLE_CONNS       idle DoT connections for the memory line (default
#                          1000)
#   BENCH_PROFILE          1 takes a Go CPU profile of dnsedge during each of
#                          its encrypted maximum-rate runs (bench/out/run/
#                          dnsedge/*.pprof and *.top.txt); default 0, since the
#                          profiler costs CPU that the rows would count
#   BENCH_CACHE_MEM        1 (default) adds the cache memory phase; 0 skips it
#   BENCH_FLEET            1 (default) adds the fleet phase (dnsedge only): a
#                          Consul-backed name against a static zone, L1 and L2
#                          hits and misses against a shared redis-server, and
#                          misses with Redis hung and dead; 0 skips it
#   BENCH_CACHE_NAMES      unique names that phase asks each server (default
#                          1000000; its caches are sized 10% above it)
#   BENCH_CACHE_SECONDS    time bound of each server's fill (default 90)
#   BENCH_POLICY_RULES     rules of the policy phase's policy (default 1000;
#                          0 skips the phase)
#   BENCH_LOW_SECONDS      length of each 100 qps run (default 20)
#   BENCH_PAIR_ROUNDS      paired rounds of each scenario that compares two
#                          dnsedge servers side by side (policy off and on,
#                          validation off and on; default 20)
#   BENCH_PAIR_SECONDS     length of one side of a paired round (default 2)
#   BENCH_PAIR_TOGETHER    1 (default) runs both sides of a fixed-rate
#                          paired round at the same time; 0 one after the other
#   BENCH_POLICY_SCENARIOS the policy phase's scenarios (default all five)
#   BENCH_MICRO_ROUNDS     runs of the forward option and histogram benchmarks
#                          (default 10)
#   BENCH_DNSSEC           1 (default) adds the validation rows: dnsedge and
#                          unbound validating a signed zone (misses, hits);
#                          0 skips them
#   BENCH_MAIN             1 (default) runs every scenario on every server; 0
#                          skips those rows and runs only the phases (policy,
#                          validation, fleet, cache memory), for a quick look
#                          at them
#   BENCH_SIDECAR_PAIRS    1 (default) adds paired rounds of dnsedge against
#                          dnsdist side by side on the sidecar scenarios
#                          (bench/sidecar.sh; needs both in BENCH_ONLY); 0
#                          skips them
#   BENCH_SIDECAR_SCENARIOS  those rounds' scenarios (default: UDP hits and
#                          misses at max, 5k and 100 qps, TCP hits at max)
#   BENCH_BASE             a git ref: adds paired rounds of dnsedge built from
#                          it against dnsedge built from the tree, on the
#                          same configuration (bench/base.sh); unset skips
#   BENCH_REPORT           the report to write (default BENCHMARKS.md at the
#                          repository root; point partial runs elsewhere)
#
# Quick smoke run: BENCH_SECONDS=2 BENCH_CACHE_NAMES=100000 \
#   BENCH_REPORT=/tmp/bench.md bash bench/run.sh
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT=$BENCH_DIR/out
RUN=$OUT/run
REPORT=${BENCH_REPORT:-$ROOT/BENCHMARKS.md}

SECS=${BENCH_SECONDS:-10}
LOW_SECS=${BENCH_LOW_SECONDS:-20}
ALL_SERVERS="dnsedge dnsdist unbound coredns"
ONLY=${BENCH_ONLY:-$ALL_SERVERS}
COREDNS_VERSION=${BENCH_COREDNS_VERSION:-v1.15.0}
NICE=${BENCH_NICE:-0}
GOMAXPROCS_SET=${BENCH_GOMAXPROCS:-}
ENCRYPTED=${BENCH_ENCRYPTED:-1}
POLICY_RULES=${BENCH_POLICY_RULES:-1000}
PAIR_ROUNDS=${BENCH_PAIR_ROUNDS:-20}
PAIR_SECS=${BENCH_PAIR_SECONDS:-2}
MAIN=${BENCH_MAIN:-1}
MICRO_ROUNDS=${BENCH_MICRO_ROUNDS:-20}
POLICY_SCENARIOS=${BENCH_POLICY_SCENARIOS:-"hit-udp-max hit-tcp-max miss-udp-max hit-udp-5k miss-udp-5k"}
PAIR_TOGETHER=${BENCH_PAIR_TOGETHER:-1}
IDLE_CONNS=${BENCH_IDLE_CONNS:-1000}
DNSSEC=${BENCH_DNSSEC:-1}
PROFILE=${BENCH_PROFILE:-0}
CACHE_MEM=${BENCH_CACHE_MEM:-1}
FLEET=${BENCH_FLEET:-1}
SIDECAR_PAIRS=${BENCH_SIDECAR_PAIRS:-1}
CACHE_NAMES=${BENCH_CACHE_NAMES:-1000000}
CACHE_SECS=${BENCH_CACHE_SECONDS:-90}
# Set per server before bench_server; empty means no encrypted rows.
# QUIC_STATUS and IDLE_STATUS are ok, or why the server has no DoQ/DoH3 rows
# or no idle-DoT-connection line.
ENC_DOT_PORT="" ENC_DOH_PORT="" QUIC_STATUS=ok IDLE_STATUS=ok CERTS=""

# The server under test gets core 0 to itself; dnsperf and the upstream named
# share core 1 (cache-hit runs never reach named).
SERVER_CORE=0
LOAD_CORE=1

ZONE_RECORDS=10000 # h0..h9999 plus a wildcard
HOT_NAMES=1000     # cache-hit set: h0..h999
RATE=5000          # fixed-rate latency runs
LOW_RATE=100       # the rate a sidecar mostly sees
CLIENTS=4
OUTSTANDING=200
MAX_ARGS=(-T 1 -c "$CLIENTS" -q "$OUTSTANDING" -t 2)
RATE_ARGS=(-T 1 -c "$CLIENTS" -q 100 -t 2 -Q "$RATE")
LOW_ARGS=(-T 1 -c 1 -q 10 -t 2 -Q "$LOW_RATE")
# The same shape for the other load generators: CLIENTS connections,
# OUTSTANDING queries in flight over all of them (dnsedge's default cap is 100
# per connection).
PER_CONN=$((OUTSTANDING / CLIENTS))
H2_MAX_ARGS=(-t 1 -c "$CLIENTS" -m "$PER_CONN")
H2_RATE_ARGS=(-t 1 -c "$CLIENTS" -m 25 --rps $((RATE / CLIENTS)))
# h2load's clients each walk the URI list from its start, so the cache-miss run
# uses one connection to keep every name new.
H2_MISS_RATE_ARGS=(-t 1 -c 1 -m 100 --rps "$RATE")
QL_MAX_ARGS=(-c "$CLIENTS" -q "$PER_CONN" -t 2s)
QL_RATE_ARGS=(-c "$CLIENTS" -q 25 -t 2s -rate "$RATE")

# Cache sizes. The main runs give every server room for 200,000 entries, more
# than they insert. The cache memory phase starts each server once more with
# room for CACHE_NAMES plus 10% (the caches are sharded by hash, and a full
# shard evicts or refuses even when the whole is not full) and asks each of
# CACHE_NAMES unique names once (u<N>.bench.test, answered by the wildcard):
# at most CACHE_RATE qps, which named sustains next to dnsperf on core 1
# (named-direct manages about 55,000 on its own), for at most CACHE_SECS
# seconds per server; the forwarders are slower than that, so their own
# forwarding rate sets how far they get.
MAIN_CACHE_ENTRIES=200000
CACHE_ENTRIES=$((CACHE_NAMES + CACHE_NAMES / 10))
CACHE_MAX_BYTES=2147483648 # dnsedge cache.max_bytes, when the build has it
UNBOUND_MSG_CACHE=1g UNBOUND_RRSET_CACHE=2g
CACHE_RATE=40000
CACHE_ARGS=(-T 1 -c "$CLIENTS" -q "$OUTSTANDING" -t 2 -Q "$CACHE_RATE")

# named, unbound and dnsdist live in sbin, which a non-root PATH may lack.
PATH=$PATH:/usr/sbin:/sbin

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
# shellcheck source=bench/canary.sh
. "$BENCH_DIR/canary.sh"
# shellcheck source=bench/base.sh
. "$BENCH_DIR/base.sh"
# shellcheck source=bench/sidecar.sh
. "$BENCH_DIR/sidecar.sh"
die() {
	log "error: $*"
	exit 1
}

if ! [[ $SECS =~ ^[0-9]+$ ]] || ((SECS < 1 || SECS > 120)); then
	die "BENCH_SECONDS must be 1..120, got '$SECS'"
fi
if ! [[ $LOW_SECS =~ ^[0-9]+$ ]] || ((LOW_SECS < 1 || LOW_SECS > 600)); then
	die "BENCH_LOW_SECONDS must be 1..600, got '$LOW_SECS'"
fi
if ! [[ $PAIR_ROUNDS =~ ^[0-9]+$ ]] || ((PAIR_ROUNDS < 1 || PAIR_ROUNDS > 200)); then
	die "BENCH_PAIR_ROUNDS must be 1..200, got '$PAIR_ROUNDS'"
fi
if ! [[ $PAIR_SECS =~ ^[0-9]+$ ]] || ((PAIR_SECS < 1 || PAIR_SECS > 60)); then
	die "BENCH_PAIR_SECONDS must be 1..60, got '$PAIR_SECS'"
fi
[[ $PAIR_TOGETHER == [01] ]] || die "BENCH_PAIR_TOGETHER must be 0 or 1, got '$PAIR_TOGETHER'"
[[ $MAIN == [01] ]] || die "BENCH_MAIN must be 0 or 1, got '$MAIN'"
if ! [[ $NICE =~ ^-?[0-9]+$ ]] || ((NICE < -20 || NICE > 19)); then
	die "BENCH_NICE must be -20..19, got '$NICE'"
fi
if [[ -n $GOMAXPROCS_SET ]] && ! [[ $GOMAXPROCS_SET =~ ^[1-9][0-9]?$ ]]; then
	die "BENCH_GOMAXPROCS must be 1..99 or empty, got '$GOMAXPROCS_SET'"
fi
[[ $ENCRYPTED == [01] ]] || die "BENCH_ENCRYPTED must be 0 or 1, got '$ENCRYPTED'"
[[ $PROFILE == [01] ]] || die "BENCH_PROFILE must be 0 or 1, got '$PROFILE'"
if ! [[ $IDLE_CONNS =~ ^[0-9]+$ ]] || ((IDLE_CONNS < 1 || IDLE_CONNS > 10000)); then
	die "BENCH_IDLE_CONNS must be 1..10000, got '$IDLE_CONNS'"
fi
[[ $DNSSEC == [01] ]] || die "BENCH_DNSSEC must be 0 or 1, got '$DNSSEC'"
[[ $CACHE_MEM == [01] ]] || die "BENCH_CACHE_MEM must be 0 or 1, got '$CACHE_MEM'"
[[ $FLEET == [01] ]] || die "BENCH_FLEET must be 0 or 1, got '$FLEET'"
[[ $SIDECAR_PAIRS == [01] ]] || die "BENCH_SIDECAR_PAIRS must be 0 or 1, got '$SIDECAR_PAIRS'"
for sc in $POLICY_SCENARIOS $BASE_SCENARIOS $SIDECAR_SCENARIOS; do
	case $sc in
	hit-udp-max | miss-udp-max | hit-tcp-max | hit-udp-5k | miss-udp-5k | hit-udp-100 | miss-udp-100) ;;
	*) die "unknown paired scenario '$sc' (BENCH_POLICY_SCENARIOS, BENCH_BASE_SCENARIOS or BENCH_SIDECAR_SCENARIOS)" ;;
	esac
done
if ! [[ $CACHE_NAMES =~ ^[0-9]+$ ]] || ((CACHE_NAMES < 1000 || CACHE_NAMES > 10000000)); then
	die "BENCH_CACHE_NAMES must be 1000..10000000, got '$CACHE_NAMES'"
fi
if ! [[ $CACHE_SECS =~ ^[0-9]+$ ]] || ((CACHE_SECS < 1 || CACHE_SECS > 600)); then
	die "BENCH_CACHE_SECONDS must be 1..600, got '$CACHE_SECS'"
fi
for s in $ONLY; do
	[[ " $ALL_SERVERS " == *" $s "* ]] || die "BENCH_ONLY: unknown server '$s' (known: $ALL_SERVERS)"
done

# ---------------------------------------------------------------- processes

PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		stop_pid "$pid"
	done
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_pid() {
	local pid=$1 i keep=() p
	for p in "${PIDS[@]}"; do
		[[ $p == "$pid" ]] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# start NAME CORE CMD...: runs CMD pinned to CORE in the background, output in
# $RUN/NAME.log; sets STARTED_PID. taskset and nice exec CMD, so the PID is
# CMD's. With BENCH_GOMAXPROCS set, CMD gets it as GOMAXPROCS (only Go
# reads it).
start() {
	local name=$1 core=$2
	shift 2
	local -a env=()
	[[ -z $GOMAXPROCS_SET ]] || env=(env "GOMAXPROCS=$GOMAXPROCS_SET")
	"${env[@]}" taskset -c "$core" nice -n "$NICE" "$@" >"$RUN/$name.log" 2>&1 &
	STARTED_PID=$!
	PIDS+=("$STARTED_PID")
}

# wait_ready PORT PID: true once PORT answers h0.bench.test over UDP and TCP,
# false if PID exits or 20 s pass.
wait_ready() {
	local port=$1 pid=$2 i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || return 1
		if kdig @127.0.0.1 -p "$port" +timeout=1 +retry=0 +short h0.bench.test A 2>/dev/null | grep -q . &&
			kdig @127.0.0.1 -p "$port" +tcp +timeout=1 +retry=0 +short h0.bench.test A 2>/dev/null | grep -q .; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
peak_rss_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# wait_encrypted_ready DOT_PORT DOH_PORT PID: true once h0.bench.test is
# answered over DoT and DoH (GET), with the bench CA checked, false if PID
# exits or 20 s pass.
wait_encrypted_ready() {
	local dot=$1 doh=$2 pid=$3 i tls=(+tls-ca="$CERTS/ca.pem" +tls-hostname=127.0.0.1)
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || return 1
		if kdig @127.0.0.1 -p "$dot" "${tls[@]}" +timeout=1 +retry=0 +short h0.bench.test A 2>/dev/null | grep -q . &&
			kdig @127.0.0.1 -p "$doh" "${tls[@]}" +https=/dns-query +https-get +timeout=1 +retry=0 +short h0.bench.test A 2>/dev/null | grep -q .; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# ---------------------------------------------------------------- tools

install_packages() {
	local need=() pair cmd pkg sudo=""
	local pairs="dnsperf:dnsperf named:bind9 dnsdist:dnsdist unbound:unbound kdig:knot-dnsutils taskset:util-linux ps:procps valgrind:valgrind"
	((ENCRYPTED == 0)) || pairs+=" h2load:nghttp2-client openssl:openssl"
	((FLEET == 0)) || pairs+=" redis-server:redis-server curl:curl"
	for pair in $pairs; do
		cmd=${pair%%:*} pkg=${pair#*:}
		command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
	done
	((${#need[@]})) || return 0
	((EUID == 0)) || sudo=sudo
	log "installing ${need[*]}"
	# Keep the packages' own services from starting on install: this script
	# starts each server itself, on its own ports.
	local policy=/usr/sbin/policy-rc.d added_policy=""
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
		$sudo chmod 755 "$policy"
		added_policy=1
	fi
	local apt=(env DEBIAN_FRONTEND=noninteractive apt-get) rc=0
	[[ -z $sudo ]] || apt=(sudo "${apt[@]}")
	"${apt[@]}" install -y --no-install-recommends "${need[@]}" ||
		{ "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends "${need[@]}"; } || rc=$?
	[[ -z $added_policy ]] || $sudo rm -f "$policy"
	((rc == 0)) || die "apt-get install ${need[*]} failed"
}

# build_coredns: sets COREDNS_BIN, or COREDNS_STATUS to why not.
build_coredns() {
	local cache dir
	cache=${BENCH_CACHE:-$(dirname "$(go env GOCACHE)")/dnsedge-bench}
	dir=$cache/coredns-$COREDNS_VERSION
	COREDNS_BIN=$dir/coredns
	COREDNS_STATUS=ok
	[[ -x $COREDNS_BIN ]] && return 0
	log "building CoreDNS $COREDNS_VERSION (cached in $dir)"
	mkdir -p "$dir"
	if ! (cd "$OUT" && GOBIN=$dir GOFLAGS=-buildvcs=false timeout 900 go install "github.com/coredns/coredns@$COREDNS_VERSION") \
		>"$OUT/coredns-build.log" 2>&1; then
		COREDNS_STATUS="build of $COREDNS_VERSION failed"
		log "CoreDNS: $COREDNS_STATUS, see bench/out/coredns-build.log"
	fi
}

# build_dnsedge: sets DNSEDGE_STATUS.
build_dnsedge() {
	DNSEDGE_STATUS=ok
	log "building dnsedge"
	if ! (cd "$ROOT" && go build -o "$OUT/dnsedge" ./cmd/dnsedge) >"$OUT/dnsedge-build.log" 2>&1; then
		DNSEDGE_STATUS="not built"
		rm -f "$OUT/dnsedge"
		log "dnsedge: not built, see bench/out/dnsedge-build.log"
	fi
}

# render TEMPLATE OUTPUT KEY=VALUE...: replaces @KEY@ with VALUE.
render() {
	local in=$1 out=$2 kv sed_args=()
	shift 2
	for kv in "$@"; do
		sed_args+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
	done
	sed "${sed_args[@]}" "$BENCH_DIR/conf/$in" >"$out"
}

# plain_conf OUT PORT METRICS_PORT: dnsedge's configuration of the main rows
# (UDP and TCP on PORT, no encrypted listeners, no policy) in OUT, for the
# phases that pair it against another server.
plain_conf() {
	render dnsedge.yaml.in "$1" PORT="$2" UPSTREAM_PORT="$NAMED_PORT" METRICS_PORT="$3" \
		PPROF=false CACHE_ENTRIES="$MAIN_CACHE_ENTRIES"
	splice "$1" CACHE_MAX_BYTES
	splice "$1" ENCRYPTED
	splice "$1" EXTRA_GROUPS
	splice "$1" POLICY
}

# splice FILE MARKER [INSERT]: replaces the line holding @MARKER@ in FILE with
# the contents of INSERT, or deletes it when INSERT is empty.
splice() {
	local file=$1 marker=$2 insert=${3:-}
	if [[ -n $insert ]]; then
		sed -i -e "/@$marker@/{r $insert" -e 'd}' "$file"
	else
		sed -i -e "/@$marker@/d" "$file"
	fi
}

# make_certs DIR: one CA and a leaf for 127.0.0.1 signed by it, shared by
# every server's encrypted listeners; sets CERTS.
make_certs() {
	CERTS=$1
	mkdir -p "$CERTS"
	(
		cd "$CERTS"
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
			-subj "/CN=dnsedge bench CA" -keyout ca.key -out ca.pem
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-subj "/CN=127.0.0.1" -keyout key.pem -out leaf.csr
		printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
			"keyUsage=digitalSignature" "extendedKeyUsage=serverAuth" >leaf.ext
		openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 7 \
			-extfile leaf.ext -out cert.pem
		openssl verify -CAfile ca.pem cert.pem
	) >"$OUT/certs.log" 2>&1 || die "openssl could not make the bench certificates, see bench/out/certs.log"
}

# ---------------------------------------------------------------- data

# make_signed_data: signed.test., the zone the validation rows ask: HOT_NAMES
# A records s0..s999 and a wildcard, signed with dnssec-signzone (ECDSA P-256,
# a KSK and a ZSK, NSEC), so every unique name is a wildcard answer with its
# NSEC proof: the validator checks two signatures per miss. Writes the zone
# for named, its DS as the trust anchor (SIGNED_ANCHOR) and the query files.
make_signed_data() {
	local dir=$RUN/named/signed n_miss_max=$((150000 * SECS)) n_miss_rate=$((RATE * SECS + RATE)) ksk zsk
	mkdir -p "$dir"
	awk -v n="$HOT_NAMES" 'BEGIN {
		print "$TTL 3600"
		print "@ IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 3600"
		print "@ IN NS ns.bench.test."
		print "* IN A 127.3.0.1"
		for (i = 0; i < n; i++) printf "s%d IN A 127.4.%d.%d\n", i, int(i / 250) % 250, i % 250 + 1
	}' >"$dir/signed.test.in"
	ksk=$(dnssec-keygen -q -K "$dir" -a ECDSAP256SHA256 -f KSK -n ZONE signed.test.)
	zsk=$(dnssec-keygen -q -K "$dir" -a ECDSAP256SHA256 -n ZONE signed.test.)
	cat "$dir/$ksk.key" "$dir/$zsk.key" >>"$dir/signed.test.in"
	dnssec-signzone -q -K "$dir" -d "$dir" -o signed.test. -f "$RUN/named/signed.test.zone" "$dir/signed.test.in" \
		>"$dir/signzone.log" 2>&1 || die "dnssec-signzone failed, see $dir/signzone.log"
	SIGNED_ANCHOR=$(dnssec-dsfromkey -2 "$dir/$ksk.key" | tr -s ' \t' ' ')
	awk -v n="$HOT_NAMES" 'BEGIN { for (i = 0; i < n; i++) printf "s%d.signed.test A\n", i }' >"$RUN/signed-hot.txt"
	awk -v n="$n_miss_rate" 'BEGIN { for (i = 0; i < n; i++) printf "v%d.signed.test A\n", i }' >"$RUN/signed-miss-rate.txt"
	awk -v n="$n_miss_max" 'BEGIN { for (i = 0; i < n; i++) printf "w%d.signed.test A\n", i }' >"$RUN/signed-miss-max.txt"
}

make_data() {
	local n_miss_max=$((150000 * SECS)) n_miss_rate=$((RATE * SECS + RATE))
	awk -v n="$ZONE_RECORDS" 'BEGIN {
		print "$TTL 3600"
		print "@ IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 3600"
		print "@ IN NS ns"
		print "ns IN A 127.0.0.1"
		print "* IN A 127.1.0.1"
		for (i = 0; i < n; i++) printf "h%d IN A 127.2.%d.%d\n", i, int(i / 250) % 250, i % 250 + 1
	}' >"$RUN/named/bench.test.zone"
	awk -v n="$HOT_NAMES" 'BEGIN { for (i = 0; i < n; i++) printf "h%d.bench.test A\n", i }' >"$RUN/hot.txt"
	# Unique names, answered by the wildcard. Each server is started fresh, so
	# a file is new to every server; two files keep the two miss runs apart.
	awk -v n="$n_miss_rate" 'BEGIN { for (i = 0; i < n; i++) printf "l%d.bench.test A\n", i }' >"$RUN/miss-rate.txt"
	awk -v n="$((LOW_RATE * LOW_SECS + LOW_RATE))" 'BEGIN { for (i = 0; i < n; i++) printf "o%d.bench.test A\n", i }' >"$RUN/miss-low.txt"
	awk -v n="$n_miss_max" 'BEGIN { for (i = 0; i < n; i++) printf "m%d.bench.test A\n", i }' >"$RUN/miss-max.txt"
	((DNSSEC == 0)) || make_signed_data
	if ((CACHE_MEM)); then
		# The cache memory phase: new to every server's second start.
		awk -v n="$CACHE_NAMES" 'BEGIN { for (i = 0; i < n; i++) printf "u%d.bench.test A\n", i }' >"$RUN/cache-fill.txt"
	fi
	((ENCRYPTED)) || return 0
	# One more file of new names per encrypted listener's miss run.
	local l p
	for l in dot:t doh:d doh3:k doq:q; do
		p=${l#*:}
		awk -v n="$n_miss_rate" -v p="$p" 'BEGIN { for (i = 0; i < n; i++) printf "%s%d.bench.test A\n", p, i }' \
			>"$RUN/miss-${l%%:*}-rate.txt"
	done
}

# ---------------------------------------------------------------- measuring

RESULTS=$RUN/results.tsv
SERVERS=$RUN/servers.tsv
IDLE=$RUN/idle.tsv
CACHEMEM=$RUN/cachemem.tsv

# row SCENARIO SERVER STATUS [QPS SENT COMPLETED LOST CPU P50 P99 SERVER% LOAD% NOTE]
row() {
	local sc=$1 server=$2 status=$3
	shift 3
	local f=("${@}")
	while ((${#f[@]} < 10)); do f+=("-"); done
	local IFS=$'\t'
	printf '%s\n' "$sc	$server	$status	${f[*]:0:10}" >>"$RESULTS"
}

# core_ticks CORE: "tasks busy total" clock ticks of one core from
# /proc/stat: time in processes (user, nice, system), all busy time (plus irq,
# softirq, steal) and all time.
core_ticks() {
	awk -v c="cpu$1" '$1 == c { t = $2 + $3 + $4; b = t + $7 + $8 + $9; print t, b, b + $5 + $6 }' /proc/stat
}

# measure SCENARIO SERVER PORT PID QUERYFILE MODE: MODE is max, tcp or rate
# (dnsperf over UDP or TCP), or LISTENER-max or LISTENER-rate for LISTENER
# dot (dnsperf), doh (h2load; QUERYFILE holds URIs) or doq and doh3
# (quicload). Scenarios named miss-* go through QUERYFILE once.
measure() {
	local sc=$1 server=$2 port=$3 pid=$4 data=$5 mode=$6
	local raw=$RUN/$server/$sc.txt cmd=() tool before after rc=0 miss="" secs=$SECS
	[[ $sc != miss-* ]] || miss=1
	[[ $mode != lowrate ]] || secs=$LOW_SECS
	case $mode in
	max | tcp | rate | lowrate | dot-*)
		tool=dnsperf
		cmd=(dnsperf -s 127.0.0.1 -p "$port" -d "$data" -l "$secs")
		case $mode in
		max) cmd+=("${MAX_ARGS[@]}") ;;
		lowrate) cmd+=("${LOW_ARGS[@]}" -v) ;;
		tcp) cmd+=("${MAX_ARGS[@]}" -m tcp) ;;
		rate) cmd+=("${RATE_ARGS[@]}" -v) ;;
		dot-max) cmd+=("${MAX_ARGS[@]}" -m dot) ;;
		dot-rate) cmd+=("${RATE_ARGS[@]}" -m dot -v) ;;
		esac
		[[ -z $miss ]] || cmd+=(-n 1)
		;;
	doh-*)
		tool=h2load
		cmd=(h2load -D "$SECS" -i "$data")
		case $mode in
		doh-max) cmd+=("${H2_MAX_ARGS[@]}") ;;
		doh-rate)
			if [[ -n $miss ]]; then cmd+=("${H2_MISS_RATE_ARGS[@]}"); else cmd+=("${H2_RATE_ARGS[@]}"); fi
			rm -f "$RUN/$server/$sc.log"
			cmd+=(--log-file "$RUN/$server/$sc.log")
			;;
		esac
		;;
	doq-* | doh3-*)
		tool=quicload
		cmd=("$OUT/quicload" -mode "${mode%-*}" -addr "127.0.0.1:$port" -ca "$CERTS/ca.pem" -names "$data" -d "${SECS}s" -v)
		case $mode in
		*-max) cmd+=("${QL_MAX_ARGS[@]}") ;;
		*-rate) cmd+=("${QL_RATE_ARGS[@]}") ;;
		esac
		[[ -z $miss ]] || cmd+=(-n 1)
		;;
	esac
	local c0_task c0_total c1_busy c1_total c0_task2 c0_total2 c1_busy2 c1_total2 prof_pid=""
	log "$server: $sc"
	if ((PROFILE)) && [[ $server == dnsedge && $mode == *-max && $mode != max ]]; then
		# The profile covers the middle of the run.
		curl -s -o "$RUN/$server/$sc.pprof" --max-time $((SECS + 10)) \
			"http://127.0.0.1:$METRICS_PORT/debug/pprof/profile?seconds=$((SECS > 2 ? SECS - 2 : 1))" &
		prof_pid=$!
	fi
	read -r c0_task _ c0_total <<<"$(core_ticks "$SERVER_CORE")"
	read -r _ c1_busy c1_total <<<"$(core_ticks "$LOAD_CORE")"
	before=$(cpu_ticks "$pid")
	timeout $((secs + 30)) taskset -c "$LOAD_CORE" nice -n "$NICE" "${cmd[@]}" >"$raw" 2>&1 || rc=$?
	if ! kill -0 "$pid" 2>/dev/null; then
		row "$sc" "$server" "server exited (see bench/out/run/$server.log)"
		return 1
	fi
	after=$(cpu_ticks "$pid")
	read -r c0_task2 _ c0_total2 <<<"$(core_ticks "$SERVER_CORE")"
	read -r _ c1_busy2 c1_total2 <<<"$(core_ticks "$LOAD_CORE")"
	if [[ -n $prof_pid ]]; then
		wait "$prof_pid" || true
		go tool pprof -top -nodecount=40 "$OUT/dnsedge" "$RUN/$server/$sc.pprof" >"$RUN/$server/$sc.top.txt" 2>&1 || true
		go tool pprof -top -cum -nodecount=60 "$OUT/dnsedge" "$RUN/$server/$sc.pprof" >"$RUN/$server/$sc.cum.txt" 2>&1 || true
	fi
	local sent completed lost qps runtime cpu p50=- p99=- note=""
	case $tool in
	dnsperf)
		if ((rc != 0)) || ! grep -q 'Queries completed:' "$raw"; then
			row "$sc" "$server" "dnsperf failed (exit $rc)"
			return 0
		fi
		sent=$(awk '/Queries sent:/ { print $3 }' "$raw")
		completed=$(awk '/Queries completed:/ { print $3 }' "$raw")
		lost=$(awk '/Queries lost:/ { gsub(/[()%]/, "", $4); print $4 }' "$raw")
		qps=$(awk '/Queries per second:/ { print $4 }' "$raw")
		runtime=$(awk '/Run time \(s\):/ { print $4 }' "$raw")
		if [[ $mode == *rate ]]; then
			read -r p50 p99 _ <<<"$("$OUT/benchtool" latency "$raw")"
		fi
		if grep -q 'Testing complete (end of file)' "$raw"; then
			note="query file ran out after ${runtime} s"
		fi
		local rcodes
		rcodes=$(sed -n 's/^ *Response codes: *//p' "$raw")
		if [[ $rcodes != "NOERROR "*"(100.00%)" ]]; then
			note="${note:+$note; }rcodes: ${rcodes:-none}"
		fi
		;;
	h2load)
		# requests: T total, S started, D done, OK succeeded, F failed, E errored, TO timeout
		local done_n
		if ((rc != 0)) || ! grep -q '^requests:' "$raw"; then
			row "$sc" "$server" "h2load failed (exit $rc)"
			return 0
		fi
		read -r sent done_n completed <<<"$(awk '/^requests:/ { print $4, $6, $8 }' "$raw")"
		runtime=$(awk '/^finished in/ { t = $3; sub(/,$/, "", t); if (t ~ /ms$/) { sub(/ms$/, "", t); t /= 1000 } else sub(/s$/, "", t); print t }' "$raw")
		# Requests still in flight when the run stopped are left out, as dnsperf
		# leaves out its interrupted queries.
		lost=$(awk -v d="$done_n" -v c="$completed" 'BEGIN { if (d > 0) printf "%.2f", (d - c) * 100 / d; else print "100.00" }')
		qps=$(awk -v c="$completed" -v t="$runtime" 'BEGIN { if (t > 0) printf "%.0f", c / t; else print "-" }')
		if [[ $mode == *rate ]]; then
			read -r p50 p99 _ <<<"$("$OUT/benchtool" h2latency "$RUN/$server/$sc.log")"
		fi
		if ((done_n != completed)); then
			note="$((done_n - completed)) requests not answered with 2xx: $(grep -E '^(requests|status codes):' "$raw" | tr '\n' ' ')"
		fi
		;;
	quicload)
		if ((rc != 0)) || ! grep -q '^quicload ' "$raw"; then
			row "$sc" "$server" "quicload failed (exit $rc): $(tail -n1 "$raw" | tr '\t|' '  ' | cut -c1-120)"
			return 0
		fi
		local kv noerror
		kv=$(awk '/^quicload / { for (i = 2; i <= NF; i++) print $i }' "$raw")
		field() { sed -n "s/^$1=//p" <<<"$kv"; }
		sent=$(field sent) completed=$(field answered) noerror=$(field noerror)
		runtime=$(field seconds) qps=$(field qps)
		lost=$(awk -v s="$sent" -v a="$completed" 'BEGIN { if (s > 0) printf "%.2f", (s - a) * 100 / s; else print "100.00" }')
		if [[ $mode == *rate ]]; then
			p50=$(field p50_ms) p99=$(field p99_ms)
		fi
		if [[ -n $miss ]] && awk -v r="$runtime" -v s="$SECS" 'BEGIN { exit !(r < s - 0.5) }'; then
			note="query file ran out after ${runtime} s"
		fi
		if ((noerror != completed)); then
			note="${note:+$note; }$((completed - noerror)) of $completed answers not NOERROR"
		fi
		if grep -q '^quicload: ' "$raw"; then
			note="${note:+$note; }first error: $(grep -m1 '^quicload: ' "$raw" | cut -c11-110 | tr '\t|' '  ')"
		fi
		;;
	esac
	cpu=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$completed" \
		'BEGIN { if (n > 0) printf "%.2f", t * 1e6 / hz / n; else print "-" }')
	# The server's share of its core, how busy the load core was, and how much
	# of core 0 other processes took (interrupt time is left out of that: on
	# loopback it is mostly this benchmark's own packets).
	local ticks=$((after - before)) d0=$((c0_total2 - c0_total)) d1=$((c1_total2 - c1_total))
	local server_pct=- load_pct=- other_pct=0 core=$SERVER_CORE
	[[ $server != named-direct ]] || core=$LOAD_CORE
	if ((d0 > 0 && d1 > 0)); then
		load_pct=$(((c1_busy2 - c1_busy) * 100 / d1))
		if [[ $core == "$SERVER_CORE" ]]; then
			server_pct=$((ticks * 100 / d0))
			other_pct=$(((c0_task2 - c0_task - ticks) * 100 / d0))
		else
			server_pct=$((ticks * 100 / d1))
		fi
	fi
	if ((other_pct > 10)); then
		note="${note:+$note; }other processes used ${other_pct}% of core $SERVER_CORE"
	fi
	row "$sc" "$server" ok "$qps" "$sent" "$completed" "$lost" "$cpu" "$p50" "$p99" "$server_pct" "$load_pct" "$note"
	sleep 1 # let queues drain before the next run
}

# idle_memory SERVER PID DOT_PORT: opens IDLE_CONNS DoT connections to the
# server, one query each, holds them, and records the growth of the server's
# VmRSS per connection in idle.tsv.
idle_memory() {
	local server=$1 pid=$2 port=$3 raw=$RUN/$1/idle-dot.txt before after qpid i est=0 failed=- per=- note=""
	log "$server: $IDLE_CONNS idle DoT connections"
	sleep 1
	before=$(rss_kib "$pid")
	timeout 150 taskset -c "$LOAD_CORE" "$OUT/quicload" -mode dot-idle -addr "127.0.0.1:$port" -ca "$CERTS/ca.pem" \
		-names "$RUN/hot.txt" -conns "$IDLE_CONNS" -per-source 50 -hold 90s >"$raw" 2>&1 &
	qpid=$!
	PIDS+=("$qpid")
	for ((i = 0; i < 900; i++)); do
		grep -qs '^ready ' "$raw" && break
		kill -0 "$qpid" 2>/dev/null || break
		sleep 0.1
	done
	if grep -qs '^ready ' "$raw"; then
		sleep 3 # let the server settle: goroutines parked, buffers released
		after=$(rss_kib "$pid")
		if ((PROFILE)) && [[ $server == dnsedge ]]; then
			# What the held connections keep alive, after a collection (gc=1).
			if curl -s --max-time 20 -o "$RUN/$server/idle-heap.pprof" "http://127.0.0.1:$METRICS_PORT/debug/pprof/heap?gc=1"; then
				go tool pprof -top -sample_index=inuse_space -nodecount=30 "$OUT/dnsedge" "$RUN/$server/idle-heap.pprof" \
					>"$RUN/$server/idle-heap.top.txt" 2>&1 || true
			fi
			curl -s --max-time 20 -o "$RUN/$server/idle-goroutines.txt" "http://127.0.0.1:$METRICS_PORT/debug/pprof/goroutine?debug=1" || true
			grep -E '^Vm|^Rss' "/proc/$pid/status" >"$RUN/$server/idle-status.txt" || true
		fi
		read -r est failed <<<"$(awk '/^ready / { sub(/established=/, "", $2); sub(/failed=/, "", $3); print $2, $3 }' "$raw")"
		((est > 0)) && per=$(awk -v a="$after" -v b="$before" -v n="$est" 'BEGIN { printf "%.1f", (a - b) / n }')
		((failed == 0)) || note="$failed connections failed: $(sed -n 's/^first error: //p' "$raw" | cut -c1-100)"
	else
		after=-
		note="quicload did not get ready, see bench/out/run/$server/idle-dot.txt"
	fi
	stop_pid "$qpid"
	kill -0 "$pid" 2>/dev/null || note="${note:+$note; }server exited"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$IDLE_CONNS" "$est" "$before" "$after" "$per" "$note" >>"$IDLE"
	sleep 1
}

# warm SERVER PORT: asks the hot set once, gently.
warm() {
	timeout 60 taskset -c "$LOAD_CORE" nice -n "$NICE" dnsperf -s 127.0.0.1 -p "$2" -d "$RUN/hot.txt" -n 1 -c 1 -q 10 -t 2 \
		>"$RUN/$1/warm.txt" 2>&1 || true
}

# The cache-hit scenarios run first, so that the peak RSS after them
# (hit-rss.tsv) is a server's peak with the hot set alone cached.
SCENARIOS="hit-udp-100 hit-udp-5k hit-udp-max hit-tcp-max miss-udp-100 miss-udp-5k miss-udp-max"
ENC_SCENARIOS="hit-dot-5k miss-dot-5k hit-dot-max hit-doh-5k miss-doh-5k hit-doh-max"
QUIC_SCENARIOS="hit-doh3-5k miss-doh3-5k hit-doh3-max hit-doq-5k miss-doq-5k hit-doq-max"

# bench_server NAME STATUS VERSION PORT CMD...: unless STATUS says why not,
# starts CMD (which must listen on PORT), runs every scenario, records peak
# RSS and stops it. With ENC_DOT_PORT and ENC_DOH_PORT set, it also measures
# idle DoT connections first (unless IDLE_STATUS says why not) and the
# encrypted scenarios last; QUIC_STATUS is ok when the server also serves DoQ
# on ENC_DOT_PORT and DoH3 on ENC_DOH_PORT, else why not.
bench_server() {
	local name=$1 status=$2 version=$3 port=$4
	shift 4
	local sc
	((MAIN)) || return 0
	mkdir -p "$RUN/$name"
	if [[ $status == ok ]]; then
		start "$name" "$SERVER_CORE" "$@"
		if ! wait_ready "$port" "$STARTED_PID"; then
			status="failed to start"
			log "$name: $status, see bench/out/run/$name.log"
			stop_pid "$STARTED_PID"
		fi
	fi
	local enc_scenarios="" quic_scenarios=""
	if [[ -n $ENC_DOT_PORT ]]; then
		enc_scenarios=$ENC_SCENARIOS
		if [[ $QUIC_STATUS == ok ]]; then
			enc_scenarios+=" $QUIC_SCENARIOS"
		else
			quic_scenarios=$QUIC_SCENARIOS
		fi
	fi
	for sc in $quic_scenarios; do
		row "$sc" "$name" "$QUIC_STATUS"
	done
	if [[ $status == ok && -n $enc_scenarios ]] && ! wait_encrypted_ready "$ENC_DOT_PORT" "$ENC_DOH_PORT" "$STARTED_PID"; then
		log "$name: DoT or DoH does not answer, see bench/out/run/$name.log"
		for sc in $enc_scenarios; do
			row "$sc" "$name" "DoT or DoH listener did not answer"
		done
		enc_scenarios=""
	fi
	if [[ $status != ok ]]; then
		for sc in $SCENARIOS $enc_scenarios; do
			row "$sc" "$name" "$status"
		done
		printf '%s\t%s\t%s\t-\t%s\n' "$name" "$version" "$status" "" >>"$SERVERS"
		return 0
	fi
	local pid=$STARTED_PID note="" data mode p started
	# Idle memory: settled after start, then with the hot set cached.
	sleep 2
	started=$(rss_kib "$pid" 2>/dev/null || echo -)
	warm "$name" "$port"
	sleep 2
	printf '%s\t%s\t%s\n' "$name" "$started" "$(rss_kib "$pid" 2>/dev/null || echo -)" >>"$RUN/idle-rss.tsv"
	if [[ -n $enc_scenarios && $IDLE_STATUS == ok ]]; then
		idle_memory "$name" "$pid" "$ENC_DOT_PORT"
	elif [[ -n $enc_scenarios ]]; then
		printf '%s\t%s\t-\t-\t-\t-\t%s\n' "$name" "$IDLE_CONNS" "$IDLE_STATUS" >>"$IDLE"
	fi
	if [[ -n $enc_scenarios ]]; then
		# h2load wants URIs, with the server's port in them.
		"$OUT/benchtool" dohuris "https://127.0.0.1:$ENC_DOH_PORT/dns-query" <"$RUN/hot.txt" >"$RUN/$name/hot.uris"
		"$OUT/benchtool" dohuris "https://127.0.0.1:$ENC_DOH_PORT/dns-query" <"$RUN/miss-doh-rate.txt" >"$RUN/$name/miss-doh.uris"
	fi
	for sc in $SCENARIOS $enc_scenarios; do
		if [[ -n $note ]]; then
			row "$sc" "$name" "not run: server exited earlier"
			continue
		fi
		case $sc in
		hit-udp-100) data=hot.txt mode=lowrate ;;
		miss-udp-100) data=miss-low.txt mode=lowrate ;;
		hit-udp-5k) data=hot.txt mode=rate ;;
		miss-udp-5k) data=miss-rate.txt mode=rate ;;
		hit-udp-max) data=hot.txt mode=max ;;
		hit-tcp-max) data=hot.txt mode=tcp ;;
		miss-udp-max) data=miss-max.txt mode=max ;;
		hit-doh-*) data=$name/hot.uris ;;
		miss-doh-*) data=$name/miss-doh.uris ;;
		hit-*) data=hot.txt ;;
		miss-*) data=${sc#miss-} data=miss-${data%-*}-rate.txt ;;
		esac
		p=$port
		case $sc in
		*-dot-* | *-doq-*) p=$ENC_DOT_PORT ;;
		*-doh-* | *-doh3-*) p=$ENC_DOH_PORT ;;
		esac
		if [[ $sc == hit-dot-5k ]]; then
			# The cache-miss run at maximum rate has pushed the hot set out.
			warm "$name" "$port"
		fi
		case $sc in
		*-udp-* | *-tcp-*) ;;
		*-max) mode=${sc#hit-} mode=${mode%-max}-max ;;
		*-5k) mode=${sc#*-} mode=${mode%-5k}-rate ;;
		esac
		measure "$sc" "$name" "$p" "$pid" "$RUN/$data" "$mode" || note="exited during the runs"
		if [[ $sc == hit-tcp-max && -z $note ]]; then
			printf '%s\t%s\n' "$name" "$(peak_rss_kib "$pid" 2>/dev/null || echo -)" >>"$RUN/hit-rss.tsv"
		fi
	done
	local rss=-
	kill -0 "$pid" 2>/dev/null && rss=$(peak_rss_kib "$pid")
	printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$version" "${note:-ok}" "$rss" "" >>"$SERVERS"
	stop_pid "$pid"
}

# ---------------------------------------------------------------- cache memory

# cache_row SERVER STATUS [SENT NOERROR ENTRIES COUNTED SECONDS QPS RSS0 HWM0
# RSS1 HWM1 PER NOTE]: one line of cachemem.tsv. Memory is in KiB, before and
# after the fill; COUNTED says where ENTRIES comes from: "server" for the
# server's own count, "noerror" for dnsperf's NOERROR answers.
cache_row() {
	local name=$1 status=$2
	shift 2
	local f=("${@}")
	while ((${#f[@]} < 12)); do f+=("-"); done
	local IFS=$'\t'
	printf '%s\n' "$name	$status	${f[*]:0:12}" >>"$CACHEMEM"
}

# prom PORT REGEX: the value of the one series whose name and labels match
# REGEX at http://127.0.0.1:PORT/metrics, as an integer (Prometheus writes
# large values as 1.0e+06), or "-".
prom() {
	{ curl -s --max-time 10 "http://127.0.0.1:$1/metrics" 2>/dev/null || true; } |
		awk -v re="$2" '$1 ~ re { v = $2; n++ }
			END { if (n == 1 && v ~ /^[0-9.]+([eE]\+?[0-9]+)?$/) printf "%.0f\n", v; else print "-" }'
}

# cache_entries SERVER STATS: how many entries SERVER's cache holds by its own
# count, or "-" if that cannot be read. STATS is the port of its metrics
# endpoint, or for unbound its configuration file (for unbound-control).
cache_entries() {
	case $1 in
	dnsedge*) prom "$2" '^dnsedge_cache_entries$' ;;
	dnsdist) prom "$2" '^dnsdist_pool_cache_entries[{]pool="_default_"[}]$' ;;
	coredns) prom "$2" '^coredns_cache_entries[{].*type="success"' ;;
	unbound)
		# One message entry per name asked; each also holds an RRset entry.
		{ timeout 10 unbound-control -c "$2" stats_noreset 2>/dev/null || true; } |
			awk -F= '$1 == "msg.cache.count" { v = $2 } END { print (v ~ /^[0-9]+$/) ? v : "-" }'
		;;
	*) echo - ;;
	esac
}

# cache_fill NAME PID PORT STATS NOTE: asks the freshly started server NAME
# (PID, on PORT) each name of cache-fill.txt once, and records in
# cachemem.tsv how much its VmRSS grew per entry its cache gained. Entries
# are the server's own count (cache_entries NAME STATS) after the fill minus
# before it; if that cannot be read, dnsperf's NOERROR answers, an upper
# bound. NOTE starts the Notes column.
cache_fill() {
	local name=$1 pid=$2 port=$3 stats=$4 note=$5 raw=$RUN/cachemem/$1/fill.txt rc=0
	local rss0 hwm0 n0 rss1 hwm1 n1 t0 t1 sent noerror lost runtime qps entries counted=server per=-
	local c0_task c0_total c0_task2 c0_total2
	log "$name: cache memory, $CACHE_NAMES names, at most $CACHE_SECS s"
	warm "cachemem/$name" "$port"
	sleep 2 # let the start and the warm-up settle
	rss0=$(rss_kib "$pid") hwm0=$(peak_rss_kib "$pid")
	n0=$(cache_entries "$name" "$stats")
	read -r c0_task _ c0_total <<<"$(core_ticks "$SERVER_CORE")"
	t0=$(cpu_ticks "$pid")
	timeout $((CACHE_SECS + 30)) taskset -c "$LOAD_CORE" nice -n "$NICE" dnsperf -s 127.0.0.1 -p "$port" \
		-d "$RUN/cache-fill.txt" -n 1 -l "$CACHE_SECS" "${CACHE_ARGS[@]}" >"$raw" 2>&1 || rc=$?
	if ! kill -0 "$pid" 2>/dev/null; then
		cache_row "$name" "server exited (see bench/out/run/cachemem/$name.log)"
		return 0
	fi
	t1=$(cpu_ticks "$pid")
	read -r c0_task2 _ c0_total2 <<<"$(core_ticks "$SERVER_CORE")"
	# Answers dnsperf gave up on may still be on their way into the cache.
	sleep 3
	if ! kill -0 "$pid" 2>/dev/null; then
		cache_row "$name" "server exited (see bench/out/run/cachemem/$name.log)"
		return 0
	fi
	rss1=$(rss_kib "$pid") hwm1=$(peak_rss_kib "$pid")
	n1=$(cache_entries "$name" "$stats")
	if ((rc != 0)) || ! grep -q 'Queries completed:' "$raw"; then
		cache_row "$name" "dnsperf failed (exit $rc)"
		return 0
	fi
	sent=$(awk '/Queries sent:/ { print $3 }' "$raw")
	lost=$(awk '/Queries lost:/ { print $3 }' "$raw")
	noerror=$(sed -n 's/^ *Response codes:.*NOERROR \([0-9][0-9]*\).*/\1/p' "$raw")
	noerror=${noerror:-0}
	runtime=$(awk '/Run time \(s\):/ { print $4 }' "$raw")
	qps=$(awk '/Queries per second:/ { print $4 }' "$raw")
	if [[ $n0 != - && $n1 != - ]]; then
		entries=$((n1 - n0))
	else
		entries=$noerror counted=noerror
		note="${note:+$note; }the server's count of entries could not be read: NOERROR answers instead"
	fi
	if ((entries > 0)); then
		per=$(awk -v a="$rss1" -v b="$rss0" -v n="$entries" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }')
	fi
	if grep -q 'Testing complete (time limit)' "$raw"; then
		note="${note:+$note; }stopped by the ${CACHE_SECS} s bound"
	fi
	((lost == 0)) || note="${note:+$note; }$lost queries lost"
	if ((entries * 100 < noerror * 99)); then
		note="${note:+$note; }the cache kept $entries of $noerror answers"
		if [[ $name == dnsedge* ]]; then
			local ev
			ev=$(prom "$stats" '^dnsedge_cache_evictions_total$')
			[[ $ev == - ]] || note+=" ($ev evictions)"
		fi
	fi
	if [[ $name == dnsedge* && $n1 != - ]] && ((n1 > 0)); then
		# What the cache itself counts against its byte bound, against RSS.
		local held
		held=$(prom "$stats" '^dnsedge_cache_bytes$')
		[[ $held == - ]] || note="${note:+$note; }dnsedge_cache_bytes: $((held / n1)) per entry"
	fi
	local d0=$((c0_total2 - c0_total)) other=0
	((d0 <= 0)) || other=$(((c0_task2 - c0_task - (t1 - t0)) * 100 / d0))
	((other <= 10)) || note="${note:+$note; }other processes used ${other}% of core $SERVER_CORE"
	note=$(tr '\t|' '  ' <<<"$note")
	cache_row "$name" ok "$sent" "$noerror" "$entries" "$counted" "$runtime" "$qps" "$rss0" "$hwm0" "$rss1" "$hwm1" "$per" "$note"
}

# cache_server NAME STATUS PORT STATS NOTE CMD...: unless STATUS says why not,
# starts CMD (which must listen on PORT) alone on the server core, fills its
# cache (cache_fill) and stops it.
cache_server() {
	local name=$1 status=$2 port=$3 stats=$4 note=$5
	shift 5
	mkdir -p "$RUN/cachemem/$name"
	if [[ $status != ok ]]; then
		cache_row "$name" "$status"
		return 0
	fi
	start "cachemem/$name" "$SERVER_CORE" "$@"
	if wait_ready "$port" "$STARTED_PID"; then
		cache_fill "$name" "$STARTED_PID" "$port" "$stats" "$note"
	else
		log "$name: failed to start, see bench/out/run/cachemem/$name.log"
		cache_row "$name" "failed to start (see bench/out/run/cachemem/$name.log)"
	fi
	stop_pid "$STARTED_PID"
}

# cpu_ns PID: the time PID's threads have been on a CPU, in nanoseconds
# (schedstat's first field, summed over its threads): unlike utime+stime,
# which count whole clock ticks, this resolves the short paired rounds.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'; }

# pair_data SCENARIO ROUND: sets data (a query file in $RUN) and mode for
# one paired round. A miss round gets names of its own (the first
# PAIR_SECS worth of the miss file, prefixed with the round), which the
# caller removes after the round.
pair_data() {
	local sc=$1 r=$2 n
	case $sc in
	hit-udp-5k) data=hot.txt mode=rate ;;
	hit-udp-max) data=hot.txt mode=max ;;
	hit-tcp-max) data=hot.txt mode=tcp ;;
	miss-udp-5k) data=miss-rate.txt mode=rate n=$((RATE * PAIR_SECS + RATE)) ;;
	miss-udp-max) data=miss-max.txt mode=max n=$((150000 * PAIR_SECS)) ;;
	hit-udp-100) data=hot.txt mode=lowrate ;;
	miss-udp-100) data=miss-low.txt mode=lowrate n=$((LOW_RATE * PAIR_SECS + LOW_RATE)) ;;
	dnssec-hit-udp-max) data=signed-hot.txt mode=max ;;
	dnssec-hit-udp-5k) data=signed-hot.txt mode=rate ;;
	*) die "pair_data: unknown scenario $sc" ;;
	esac
	if [[ $sc == miss-* ]]; then
		head -n "$n" "$RUN/$data" | sed "s/^/r$r-/" >"$RUN/pair-$r-$data"
		data=pair-$r-$data
	fi
}

# pair_round TSV SCENARIO ROUND SIDE PORT PID DATA MODE: one short round
# (PAIR_SECS) of dnsperf against one side, appended to TSV as scenario,
# round, side, status, queries completed and server CPU in nanoseconds.
pair_round() {
	local tsv=$1 sc=$2 r=$3 side=$4 port=$5 pid=$6 data=$7 mode=$8
	local raw=$RUN/pairs/$sc-$r-$side.txt cmd=(dnsperf -s 127.0.0.1 -p "$port" -d "$data" -l "$PAIR_SECS") before after rc=0 done
	case $mode in
	max) cmd+=("${MAX_ARGS[@]}") ;;
	tcp) cmd+=("${MAX_ARGS[@]}" -m tcp) ;;
	rate) cmd+=("${RATE_ARGS[@]}") ;;
	lowrate) cmd+=("${LOW_ARGS[@]}") ;;
	esac
	[[ $sc != miss-* ]] || cmd+=(-n 1)
	before=$(cpu_ns "$pid")
	timeout $((PAIR_SECS + 30)) taskset -c "$LOAD_CORE" nice -n "$NICE" "${cmd[@]}" >"$raw" 2>&1 || rc=$?
	if ! kill -0 "$pid" 2>/dev/null; then
		printf '%s\t%s\t%s\tserver exited\t-\t-\n' "$sc" "$r" "$side" >>"$tsv"
		return 1
	fi
	after=$(cpu_ns "$pid")
	done=$(awk '/Queries completed:/ { print $3 }' "$raw")
	if ((rc != 0)) || [[ -z $done ]]; then
		printf '%s\t%s\t%s\tdnsperf failed (exit %s)\t-\t-\n' "$sc" "$r" "$side" "$rc" >>"$tsv"
		return 0
	fi
	printf '%s\t%s\t%s\tok\t%s\t%s\n' "$sc" "$r" "$side" "$done" "$((after - before))" >>"$tsv"
}

# pair_rounds TSV A B SCENARIO...: PAIR_ROUNDS short rounds of each scenario
# on two servers running side by side on the server core, A and B being keys
# of the caller's ports and pids arrays. Each round measures both, one right
# after the other, in alternating order (A B, then B A, ...), so that the two
# figures of a round see the same machine; the report takes the ratio per
# round and the median of those ratios.
pair_rounds() {
	local tsv=$1 a=$2 b=$3 sc r side first second data mode
	shift 3
	mkdir -p "$RUN/pairs"
	for sc in "$@"; do
		log "paired rounds: $sc, $PAIR_ROUNDS x ${PAIR_SECS} s on $a and $b"
		for ((r = 1; r <= PAIR_ROUNDS; r++)); do
			pair_data "$sc" "$r"
			first=$a second=$b
			((r % 2)) || first=$b second=$a
			if [[ $mode == rate || $mode == lowrate ]] && ((PAIR_TOGETHER)); then
				# A fixed rate leaves the core idle most of the time, and
				# what a query costs there moves with the machine from one
				# second to the next: both sides run at once, so that both
				# figures of the round see the same seconds.
				local pa pb
				pair_round "$tsv" "$sc" "$r" "$a" "${ports[$a]}" "${pids[$a]}" "$RUN/$data" "$mode" &
				pa=$!
				pair_round "$tsv" "$sc" "$r" "$b" "${ports[$b]}" "${pids[$b]}" "$RUN/$data" "$mode" &
				pb=$!
				wait "$pa" || log "paired rounds: the $a server exited"
				wait "$pb" || log "paired rounds: the $b server exited"
			else
				for side in $first $second; do
					pair_round "$tsv" "$sc" "$r" "$side" "${ports[$side]}" "${pids[$side]}" "$RUN/$data" "$mode" ||
						log "paired rounds: the $side server exited"
				done
			fi
			[[ $sc != miss-* ]] || rm -f "$RUN/$data"
		done
	done
}

# pair_servers NAME A B CONF_A CONF_B: starts dnsedge twice on the server
# core (the binaries PAIR_BIN_A and PAIR_BIN_B, $OUT/dnsedge by default),
# on CONF_A and CONF_B (ports[A] and ports[B] of the caller), checks
# each configuration first and warms both with WARM (a query file in $RUN);
# sets pids. False, with the reason logged, if either does not start.
pair_servers() {
	local name=$1 a=$2 b=$3 side conf
	local -A confs=([$a]=$4 [$b]=$5) bins=([$a]=${PAIR_BIN_A:-$OUT/dnsedge} [$b]=${PAIR_BIN_B:-$OUT/dnsedge})
	for side in "$a" "$b"; do
		conf=${confs[$side]}
		if ! "${bins[$side]}" check "$conf" >"$RUN/$name-$side.check" 2>&1; then
			log "$name: $conf rejected, see $RUN/$name-$side.check"
			return 1
		fi
		mkdir -p "$RUN/$name-$side"
		start "$name-$side" "$SERVER_CORE" "${bins[$side]}" serve -config "$conf"
		pids[$side]=$STARTED_PID
		if ! wait_ready "${ports[$side]}" "$STARTED_PID"; then
			log "$name: the $side server did not start, see bench/out/run/$name-$side.log"
			return 1
		fi
		timeout 60 taskset -c "$LOAD_CORE" nice -n "$NICE" dnsperf -s 127.0.0.1 -p "${ports[$side]}" -d "$RUN/$WARM" -n 1 -c 1 -q 10 -t 2 \
			>"$RUN/$name-$side/warm.txt" 2>&1 || true
	done
}

# policy_phase: the cost of a policy of POLICY_RULES rules (benchtool
# policy). Two dnsedge servers, the same configuration but for the policy
# (both have the second group that every query's split may pick): "off"
# without it, "on" with it, measured in paired rounds (pair_rounds). Rows go
# to policy.tsv, peak RSS to policy-rss.tsv.
policy_phase() {
	local side conf
	local -A ports=([off]=${PORTS[19]} [on]=${PORTS[20]}) stats=([off]=${PORTS[21]} [on]=${PORTS[22]}) pids=()
	printf '  - name: canary\n    strategy: sequential\n    upstreams: [auth]\n' >"$RUN/policy-groups.yaml"
	rm -f "$RUN/policy.tsv" "$RUN/policy-rss.tsv"
	"$OUT/benchtool" policy "$POLICY_RULES" >"$RUN/policy.yaml"
	printf 'policy_file: %s\n' "$RUN/policy.yaml" >"$RUN/policy-key.yaml"
	for side in off on; do
		conf=$RUN/dnsedge-policy-$side.yaml
		render dnsedge.yaml.in "$conf" PORT="${ports[$side]}" UPSTREAM_PORT="$NAMED_PORT" METRICS_PORT="${stats[$side]}" \
			PPROF=false CACHE_ENTRIES="$MAIN_CACHE_ENTRIES"
		splice "$conf" CACHE_MAX_BYTES
		splice "$conf" ENCRYPTED
		splice "$conf" EXTRA_GROUPS "$RUN/policy-groups.yaml"
		if [[ $side == on ]]; then splice "$conf" POLICY "$RUN/policy-key.yaml"; else splice "$conf" POLICY; fi
	done
	if WARM=hot.txt pair_servers policy off on "$RUN/dnsedge-policy-off.yaml" "$RUN/dnsedge-policy-on.yaml"; then
		pair_rounds "$RUN/policy.tsv" off on $POLICY_SCENARIOS
		for side in off on; do
			printf '%s\t%s\n' "$side" "$(peak_rss_kib "${pids[$side]}" 2>/dev/null || echo -)" >>"$RUN/policy-rss.tsv"
		done
	fi
	for side in off on; do
		[[ -z ${pids[$side]:-} ]] || stop_pid "${pids[$side]}"
	done
}

DNSSEC_SCENARIOS="dnssec-hit-udp-max dnssec-hit-udp-5k dnssec-miss-udp-5k dnssec-miss-udp-max"

# dnssec_server NAME STATUS VERSION PORT CMD...: the validation rows for one
# validating server: it is started alone (like bench_server), warmed with
# the signed hot set, and asked signed.test. names: hits, then names never
# asked (wildcard answers, each validated). dnsedge's hit rows compare with
# its unvalidated hit rows of the same run.
dnssec_server() {
	local name=$1 status=$2 version=$3 port=$4
	shift 4
	local sc pid data mode note=""
	mkdir -p "$RUN/$name"
	if [[ $status == ok ]]; then
		start "$name" "$SERVER_CORE" "$@"
		if ! wait_ready "$port" "$STARTED_PID"; then
			status="failed to start"
			log "$name: $status, see bench/out/run/$name.log"
			stop_pid "$STARTED_PID"
		elif ! kdig @127.0.0.1 -p "$port" +dnssec +timeout=2 +retry=0 s0.signed.test A 2>/dev/null | grep -qi 'flags:.* ad'; then
			status="does not validate (no AD on s0.signed.test, see bench/out/run/$name.log)"
			log "$name: $status"
			stop_pid "$STARTED_PID"
		fi
	fi
	if [[ $status != ok ]]; then
		for sc in $DNSSEC_SCENARIOS; do
			row "$sc" "$name" "$status"
		done
		printf '%s\t%s\t%s\t-\t%s\n' "$name" "$version" "$status" "" >>"$SERVERS"
		return 0
	fi
	pid=$STARTED_PID
	timeout 60 taskset -c "$LOAD_CORE" nice -n "$NICE" dnsperf -s 127.0.0.1 -p "$port" -d "$RUN/signed-hot.txt" -n 1 -c 1 -q 10 -t 2 \
		>"$RUN/$name/warm.txt" 2>&1 || true
	for sc in $DNSSEC_SCENARIOS; do
		if [[ -n $note ]]; then
			row "$sc" "$name" "not run: server exited earlier"
			continue
		fi
		case $sc in
		dnssec-hit-udp-max) data=signed-hot.txt mode=max ;;
		dnssec-hit-udp-5k) data=signed-hot.txt mode=rate ;;
		dnssec-miss-udp-5k) data=signed-miss-rate.txt mode=rate ;;
		dnssec-miss-udp-max) data=signed-miss-max.txt mode=max ;;
		esac
		measure "$sc" "$name" "$port" "$pid" "$RUN/$data" "$mode" || note="exited during the runs"
	done
	local rss=-
	kill -0 "$pid" 2>/dev/null && rss=$(peak_rss_kib "$pid")
	printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$version" "${note:-ok}" "$rss" "validating signed.test." >>"$SERVERS"
	stop_pid "$pid"
}

# dnssec_pairs: validated hits against unvalidated ones. Two dnsedge
# servers side by side, the same configuration but for the dnssec section
# ("plain" without it, "validate" with signed.test.'s DS as trust anchor),
# warmed with the signed hot set and measured in paired rounds
# (pair_rounds). Rows go to dnssec-pairs.tsv.
dnssec_pairs() {
	local side conf
	local -A ports=([plain]=${PORTS[26]} [validate]=${PORTS[27]}) stats=([plain]=${PORTS[28]} [validate]=${PORTS[29]}) pids=()
	rm -f "$RUN/dnssec-pairs.tsv"
	for side in plain validate; do
		conf=$RUN/dnsedge-dnssec-$side.yaml
		render dnsedge.yaml.in "$conf" PORT="${ports[$side]}" UPSTREAM_PORT="$NAMED_PORT" METRICS_PORT="${stats[$side]}" \
			PPROF=false CACHE_ENTRIES="$MAIN_CACHE_ENTRIES"
		splice "$conf" CACHE_MAX_BYTES
		splice "$conf" EXTRA_GROUPS
		splice "$conf" ENCRYPTED
		if [[ $side == validate ]]; then splice "$conf" POLICY "$RUN/dnssec-key.yaml"; else splice "$conf" POLICY; fi
	done
	if WARM=signed-hot.txt pair_servers dnssec plain validate "$RUN/dnsedge-dnssec-plain.yaml" "$RUN/dnsedge-dnssec-validate.yaml"; then
		pair_rounds "$RUN/dnssec-pairs.tsv" plain validate dnssec-hit-udp-max dnssec-hit-udp-5k
	fi
	for side in plain validate; do
		[[ -z ${pids[$side]:-} ]] || stop_pid "${pids[$side]}"
	done
}

# dnssec_phase: dnsedge and unbound, each validating with signed.test.'s DS
# as trust anchor, forwarding to the same named.
dnssec_phase() {
	local port conf version
	if [[ " $ONLY " == *" dnsedge "* ]]; then
		port=${PORTS[23]} conf=$RUN/dnsedge-validate.yaml
		render dnsedge.yaml.in "$conf" PORT="$port" UPSTREAM_PORT="$NAMED_PORT" METRICS_PORT="${PORTS[24]}" \
			PPROF=false CACHE_ENTRIES="$MAIN_CACHE_ENTRIES"
		splice "$conf" CACHE_MAX_BYTES
		splice "$conf" EXTRA_GROUPS
		splice "$conf" ENCRYPTED
		printf 'dnssec:\n  validate: true\n  trust_anchors: ["%s"]\n' "$SIGNED_ANCHOR" >"$RUN/dnssec-key.yaml"
		splice "$conf" POLICY "$RUN/dnssec-key.yaml"
		local status=$DNSEDGE_STATUS out
		if [[ $status == ok ]] && ! out=$("$OUT/dnsedge" check "$conf" 2>&1); then
			status="configuration rejected: $(head -n1 <<<"$out" | sed 's/^[^ ]*: //' | tr '\t|' '  ' | cut -c1-100)"
		fi
		version="dnsedge ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)), validating"
		dnssec_server dnsedge-validate "$status" "$version" "$port" "$OUT/dnsedge" serve -config "$conf"
		[[ $status != ok ]] || dnssec_pairs
	fi
	if [[ " $ONLY " == *" unbound "* ]]; then
		port=${PORTS[25]} conf=$RUN/unbound-validate/unbound.conf
		mkdir -p "$RUN/unbound-validate"
		render unbound.conf.in "$conf" DIR="$RUN/unbound-validate" PORT="$port" UPSTREAM_PORT="$NAMED_PORT" \
			MSG_CACHE=128m RRSET_CACHE=256m STATS=no
		splice "$conf" ENCRYPTED
		sed -i -e 's/module-config: "iterator"/module-config: "validator iterator"/' "$conf"
		printf '\ttrust-anchor: "%s"\n\tval-permissive-mode: no\n' "$SIGNED_ANCHOR" >"$conf.anchor"
		splice "$conf" VALIDATOR "$conf.anchor"
		unbound-checkconf "$conf" >"$RUN/unbound-validate/checkconf.log" 2>&1 ||
			log "unbound-validate: unbound-checkconf rejects the configuration, see bench/out/run/unbound-validate/checkconf.log"
		version="unbound $(unbound -V | awk 'NR == 1 { print $2 }'), validating"
		dnssec_server unbound-validate ok "$version" "$port" unbound -d -c "$conf"
	fi
}

# micro_rounds NAME PKG BENCH: builds PKG's test binary and runs benchmark
# BENCH (a -test.bench pattern) MICRO_ROUNDS times on the server core,
# every case of a run right after the others, writing "round N" before
# each run to NAME.txt, so that the report takes each cost within a run.
micro_rounds() {
	local name=$1 pkg=$2 bench=$3 i
	(cd "$ROOT" && go test -c -o "$OUT/$name.test" "$pkg") || {
		log "$name: the benchmark did not build"
		return 0
	}
	: >"$RUN/$name.txt"
	for ((i = 1; i <= MICRO_ROUNDS; i++)); do
		echo "round $i" >>"$RUN/$name.txt"
		taskset -c "$SERVER_CORE" nice -n "$NICE" "$OUT/$name.test" -test.run '^$' -test.bench "$bench" \
			-test.benchtime 300ms -test.count 1 -test.cpu 1 -test.benchmem >>"$RUN/$name.txt" 2>&1 || {
			log "$name: the benchmark failed, see $RUN/$name.txt"
			return 0
		}
	done
}

# carry_cost: what the options a forwarded query carries upstream (ECS,
# tags, trace id) add to the forward path (BenchmarkForwardCarry: the
# upstream query built, the group raced, the answer returned, against an
# exchanger that answers at once).
carry_cost() {
	log "forward option cost: BenchmarkForwardCarry x $MICRO_ROUNDS"
	micro_rounds carry ./edge/middleware '^BenchmarkForwardCarry$'
	micro_instructions carry '^BenchmarkForwardCarry$' plain ecs+tags ecs+tags+trace
}

# histogram_cost: what the latency histograms add to a cache hit and a
# miss served through a listener core (BenchmarkHistograms).
histogram_cost() {
	log "latency histogram cost: BenchmarkHistograms x $MICRO_ROUNDS"
	micro_rounds histograms ./edge/listen '^BenchmarkHistograms$'
	micro_instructions histograms '^BenchmarkHistograms$' \
		hit/histograms=false hit/histograms=true miss/histograms=false miss/histograms=true
}

# micro_instructions NAME PATTERN CASE...: instructions per operation of
# each CASE (A/B, a sub-benchmark's path) of NAME.test's benchmark
# PATTERN, counted by cachegrind (the
# machine's noise is not in them): two runs of each case, of 20,000 and
# 60,000 operations, so that what the benchmark sets up cancels out. One
# line per case, "CASE<TAB>instructions per op", to NAME-instr.tsv.
micro_instructions() {
	local name=$1 pattern=$2 c n a b sub
	shift 2
	command -v valgrind >/dev/null || {
		log "$name: no valgrind, so no instruction counts"
		return 0
	}
	: >"$RUN/$name-instr.tsv"
	for c in "$@"; do
		a="" b=""
		# Each level of the case's path matched whole, its regular
		# expression characters quoted: "ecs+tags" is a name, not a pattern.
		sub=$(sed -E 's/[][+.*?(){}|^$\\]/\\&/g; s|[^/]+|^&$|g' <<<"$c")
		for n in 20000 60000; do
			local refs
			# cpu.rdtscp=off: valgrind 3.19 does not know RDTSCP, which
			# the Go runtime executes when one of its locks is
			# contended; such a run dies of SIGILL and counts nothing.
			refs=$(GOMAXPROCS=1 GOGC=off GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off taskset -c "$SERVER_CORE" \
				valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
				"$OUT/$name.test" -test.run '^$' -test.bench "$pattern/$sub" -test.benchtime "${n}x" \
				>"$RUN/$name-cachegrind.txt" 2>&1 && awk '/I *refs/ { gsub(",", "", $4); print $4 }' "$RUN/$name-cachegrind.txt") || refs=""
			[[ -n $refs ]] || {
				log "$name: cachegrind gave no count for $c, see $RUN/$name-cachegrind.txt"
				return 0
			}
			if [[ -z $a ]]; then a=$refs; else b=$refs; fi
		done
		printf '%s\t%s\n' "$c" "$(((b - a) / 40000))" >>"$RUN/$name-instr.tsv"
	done
}

# cache_phase: the cache memory rows. Each server is started once more, after
# all the main runs (which keep their own configuration), with a cache sized
# for CACHE_ENTRIES, and with the endpoint that reports its count of entries:
# dnsedge's metrics, dnsdist's webserver, unbound-control, CoreDNS's
# prometheus plugin. Their memory is in the "before" figure.
cache_phase() {
	local server port stats conf note out status
	for server in $ONLY; do
		case $server in
		dnsedge)
			port=${PORTS[10]} stats=${PORTS[11]} conf=$RUN/cachemem/dnsedge.yaml note="" status=$DNSEDGE_STATUS
			mkdir -p "$RUN/cachemem"
			if [[ $status == ok ]]; then
				render dnsedge.yaml.in "$conf" PORT="$port" UPSTREAM_PORT="$NAMED_PORT" METRICS_PORT="$stats" \
					PPROF=false CACHE_ENTRIES="$CACHE_ENTRIES"
				splice "$conf" ENCRYPTED
				splice "$conf" EXTRA_GROUPS
				splice "$conf" POLICY
				# cache.max_bytes is new, and the configuration parser rejects
				# keys it does not know: ask this build whether it knows it.
				render dnsedge-cache.yaml.in "$RUN/cachemem/dnsedge-max-bytes.yaml" MAX_BYTES="$CACHE_MAX_BYTES"
				cp "$conf" "$conf.try"
				splice "$conf.try" CACHE_MAX_BYTES "$RUN/cachemem/dnsedge-max-bytes.yaml"
				if out=$("$OUT/dnsedge" check "$conf.try" 2>&1); then
					mv "$conf.try" "$conf"
				else
					rm -f "$conf.try"
					splice "$conf" CACHE_MAX_BYTES
					note="cache.max_bytes left out: this build rejects it ($(head -n1 <<<"$out" | sed 's/^[^ ]*: //' | cut -c1-80))"
					if ! out=$("$OUT/dnsedge" check "$conf" 2>&1); then
						status="configuration rejected: $(head -n1 <<<"$out" | sed 's/^[^ ]*: //' | tr '\t|' '  ' | cut -c1-100)"
					fi
				fi
			fi
			# GOGC from the environment is dropped, so that this row has
			# dnsedge serve's own GC target; the next has Go's default (GOGC=100).
			cache_server dnsedge "$status" "$port" "$stats" "$note" \
				env -u GOGC "$OUT/dnsedge" serve -config "$conf"
			cache_server dnsedge-gogc100 "$status" "$port" "$stats" "$note" \
				env GOGC=100 "$OUT/dnsedge" serve -config "$conf"
			;;
		dnsdist)
			port=${PORTS[12]} stats=${PORTS[13]} conf=$RUN/cachemem/dnsdist.conf
			mkdir -p "$RUN/cachemem"
			render dnsdist.conf.in "$conf" PORT="$port" UPSTREAM_PORT="$NAMED_PORT" \
				CACHE_ENTRIES="$CACHE_ENTRIES" CACHE_OPTIONS=", numberOfShards=20"
			render dnsdist-stats.conf.in "$conf.stats" STATS_PORT="$stats"
			cat "$conf.stats" >>"$conf"
			cache_server dnsdist ok "$port" "$stats" "" \
				dnsdist --supervised --disable-syslog -C "$conf"
			;;
		unbound)
			port=${PORTS[14]} conf=$RUN/cachemem/unbound/unbound.conf
			mkdir -p "$RUN/cachemem/unbound"
			render unbound.conf.in "$conf" DIR="$RUN/cachemem/unbound" PORT="$port" UPSTREAM_PORT="$NAMED_PORT" \
				MSG_CACHE="$UNBOUND_MSG_CACHE" RRSET_CACHE="$UNBOUND_RRSET_CACHE" STATS=yes
			splice "$conf" VALIDATOR
			splice "$conf" ENCRYPTED
			cache_server unbound ok "$port" "$conf" "" unbound -d -c "$conf"
			;;
		coredns)
			port=${PORTS[15]} stats=${PORTS[16]} conf=$RUN/cachemem/Corefile
			mkdir -p "$RUN/cachemem"
			render Corefile.in "$conf" PORT="$port" UPSTREAM_PORT="$NAMED_PORT" CACHE_ENTRIES="$CACHE_ENTRIES"
			render Corefile-stats.in "$conf.stats" STATS_PORT="$stats"
			splice "$conf" PROMETHEUS "$conf.stats"
			cache_server coredns "$COREDNS_STATUS" "$port" "$stats" "" \
				"$COREDNS_BIN" -conf "$conf" -quiet
			;;
		esac
	done
}

# ---------------------------------------------------------------- fleet

# fleet_data SCENARIO SIDE ROUND: sets data (a query file in $RUN) and mode
# for one side of a fleet round. A side that is asked misses gets names of
# its own (the first PAIR_SECS worth of the 5,000 qps miss file, prefixed
# with the scenario, the round and the side), which the caller removes
# after the round.
fleet_data() {
	local sc=$1 side=$2 r=$3
	case $sc in
	consul-udp-max) data=consul.txt mode=max ;;
	consul-udp-5k) data=consul.txt mode=rate ;;
	l2-udp-5k) data=hot.txt mode=rate ;;
	redis-*-udp-5k) data=miss-rate.txt mode=rate ;;
	*) die "fleet_data: unknown scenario $sc" ;;
	esac
	if [[ $data == miss-rate.txt || $side == miss ]]; then
		head -n $((RATE * PAIR_SECS + RATE)) "$RUN/miss-rate.txt" | sed "s/^/$sc-$r-$side-/" >"$RUN/fleet-miss-$r-$side.txt"
		data=fleet-miss-$r-$side.txt
	fi
}

# fleet_round TSV SCENARIO ROUND SIDE PORT PID DATA MODE: one round
# (PAIR_SECS) of dnsperf against one side, like pair_round, appended to TSV
# as scenario, round, side, status, queries completed, server CPU in
# nanoseconds, and p50 and p99 in ms (from dnsperf -v, at a fixed rate;
# "-" at maximum rate).
fleet_round() {
	local tsv=$1 sc=$2 r=$3 side=$4 port=$5 pid=$6 data=$7 mode=$8
	local raw=$RUN/fleet/$sc-$r-$side.txt cmd=(dnsperf -s 127.0.0.1 -p "$port" -d "$data" -l "$PAIR_SECS")
	local before after rc=0 done p50=- p99=-
	case $mode in
	max) cmd+=("${MAX_ARGS[@]}") ;;
	rate) cmd+=("${RATE_ARGS[@]}" -v) ;;
	esac
	[[ $data != */fleet-miss-* ]] || cmd+=(-n 1)
	before=$(cpu_ns "$pid")
	timeout $((PAIR_SECS + 30)) taskset -c "$LOAD_CORE" nice -n "$NICE" "${cmd[@]}" >"$raw" 2>&1 || rc=$?
	if ! kill -0 "$pid" 2>/dev/null; then
		printf '%s\t%s\t%s\tserver exited\t-\t-\t-\t-\n' "$sc" "$r" "$side" >>"$tsv"
		return 1
	fi
	after=$(cpu_ns "$pid")
	done=$(awk '/Queries completed:/ { print $3 }' "$raw")
	if ((rc != 0)) || [[ -z $done ]]; then
		printf '%s\t%s\t%s\tdnsperf failed (exit %s)\t-\t-\t-\t-\n' "$sc" "$r" "$side" "$rc" >>"$tsv"
		return 0
	fi
	[[ $mode != rate ]] || read -r p50 p99 _ <<<"$("$OUT/benchtool" latency "$raw")"
	printf '%s\t%s\t%s\tok\t%s\t%s\t%s\t%s\n' "$sc" "$r" "$side" "$done" "$((after - before))" "$p50" "$p99" >>"$tsv"
}

# fleet_rounds TSV SCENARIO SIDE...: PAIR_ROUNDS rounds of SCENARIO on the
# sides (keys of the caller's ports and pids arrays), as pair_rounds does
# for two: each round measures every side, one right after the other, the
# order rotated from round to round, so that the figures of a round see the
# same machine.
fleet_rounds() {
	local tsv=$1 sc=$2 r i n side data mode
	shift 2
	local sides=("$@")
	n=${#sides[@]}
	mkdir -p "$RUN/fleet"
	log "fleet rounds: $sc, $PAIR_ROUNDS x ${PAIR_SECS} s on ${sides[*]}"
	for ((r = 1; r <= PAIR_ROUNDS; r++)); do
		for ((i = 0; i < n; i++)); do
			side=${sides[$(((i + r - 1) % n))]}
			fleet_data "$sc" "$side" "$r"
			fleet_round "$tsv" "$sc" "$r" "$side" "${ports[$side]}" "${pids[$side]}" "$RUN/$data" "$mode" ||
				log "fleet rounds: the $side server exited"
			[[ $data != fleet-miss-* ]] || rm -f "$RUN/$data"
		done
	done
}

# fleet_server NAME SIDE CONF WARM: checks CONF, starts dnsedge on it on the
# server core as side SIDE (ports[SIDE] of the caller), sets pids[SIDE] and
# asks it WARM (a query file in $RUN) once. False, with the reason logged,
# if it does not start.
fleet_server() {
	local name=$1 side=$2 conf=$3 warm=$4
	if ! "$OUT/dnsedge" check "$conf" >"$RUN/fleet/$side.check" 2>&1; then
		log "$name: $conf rejected, see $RUN/fleet/$side.check"
		return 1
	fi
	start "fleet/$side" "$SERVER_CORE" "$OUT/dnsedge" serve -config "$conf"
	pids[$side]=$STARTED_PID
	if ! wait_ready "${ports[$side]}" "$STARTED_PID"; then
		log "$name: the $side server did not start, see bench/out/run/fleet/$side.log"
		return 1
	fi
	timeout 60 taskset -c "$LOAD_CORE" nice -n "$NICE" dnsperf -s 127.0.0.1 -p "${ports[$side]}" -d "$RUN/$warm" -n 1 -c 1 -q 10 -t 2 \
		>"$RUN/fleet/$side-warm.txt" 2>&1 || true
}

# fleet_conf SIDE EXTRA [CACHE_ENTRIES]: a dnsedge configuration for one
# side of the fleet phase, the main one with EXTRA (a file of top-level
# sections, or empty) in place of the policy; prints its path.
fleet_conf() {
	local side=$1 extra=$2 entries=${3:-$MAIN_CACHE_ENTRIES} conf=$RUN/fleet/dnsedge-$1.yaml
	render dnsedge.yaml.in "$conf" PORT="${ports[$side]}" UPSTREAM_PORT="$NAMED_PORT" METRICS_PORT="${stats[$side]}" \
		PPROF=false CACHE_ENTRIES="$entries"
	splice "$conf" CACHE_MAX_BYTES
	splice "$conf" EXTRA_GROUPS
	splice "$conf" ENCRYPTED
	splice "$conf" POLICY "$extra"
	printf '%s\n' "$conf"
}

# consul_binary: sets CONSUL_BIN, the consul agent internal/consultest builds
# and keeps in the Go build cache (built once, by its test, if missing), or
# CONSUL_STATUS to why not.
consul_binary() {
	local version
	CONSUL_STATUS=ok
	version=$(sed -n 's/^[[:space:]]*Version[[:space:]]*=[[:space:]]*"\(v[^"]*\)".*/\1/p' "$ROOT/internal/consultest/build.go")
	CONSUL_BIN=$(go env GOCACHE)/dnsedge-consul/$version/consul
	[[ -x $CONSUL_BIN ]] && return 0
	log "building the consul agent (internal/consultest, about 4 minutes)"
	(cd "$ROOT" && E2E_REQUIRED=1 timeout 900 go test -count=1 -run '^TestAgentStopStart$' ./internal/consultest) \
		>"$OUT/consul-build.log" 2>&1 || true
	[[ -x $CONSUL_BIN ]] || CONSUL_STATUS="consul agent not built, see bench/out/consul-build.log"
}

# fleet_consul: a Consul-backed answer against a static-zone one. A
# `consul agent -dev` on the load core (every port moved) with the service
# web, three instances, each with a passing TTL check; two dnsedge servers
# side by side, "static" answering web.service.consul. from a zone of the
# same three A records at TTL 0, "consul" from the agent. Rows go to
# fleet.tsv.
fleet_consul() {
	local p i http leader=""
	consul_binary
	if [[ $CONSUL_STATUS != ok ]]; then
		log "fleet: $CONSUL_STATUS"
		printf 'consul-udp-max\t0\tconsul\t%s\t-\t-\t-\t-\n' "$CONSUL_STATUS" >>"$RUN/fleet.tsv"
		return 0
	fi
	http=${FPORTS[10]}
	start fleet/consul-agent "$LOAD_CORE" "$CONSUL_BIN" agent -dev -node dnsedge-bench -bind 127.0.0.1 -client 127.0.0.1 \
		-data-dir "$RUN/fleet/consul-data" -log-level warn -http-port "$http" -dns-port "${FPORTS[11]}" \
		-server-port "${FPORTS[12]}" -serf-lan-port "${FPORTS[13]}" -serf-wan-port "${FPORTS[14]}" \
		-grpc-port "${FPORTS[15]}" -grpc-tls-port "${FPORTS[16]}"
	local agent=$STARTED_PID
	for ((i = 0; i < 150; i++)); do
		leader=$(curl -s --max-time 1 "http://127.0.0.1:$http/v1/status/leader" 2>/dev/null || true)
		[[ $leader != *:* ]] || break
		sleep 0.2
	done
	if [[ $leader != *:* ]]; then
		log "fleet: the consul agent has no leader, see bench/out/run/fleet/consul-agent.log"
		printf 'consul-udp-max\t0\tconsul\tconsul agent did not start\t-\t-\t-\t-\n' >>"$RUN/fleet.tsv"
		stop_pid "$agent"
		return 0
	fi
	for i in 1 2 3; do
		curl -sf --max-time 5 -X PUT "http://127.0.0.1:$http/v1/agent/service/register" \
			--data "{\"ID\":\"web-$i\",\"Name\":\"web\",\"Address\":\"127.3.0.$i\",\"Port\":80,\"Check\":{\"CheckID\":\"web-$i\",\"TTL\":\"24h\",\"Status\":\"passing\"}}" ||
			log "fleet: registering web-$i failed"
	done
	printf 'web.service.consul A\n' >"$RUN/consul.txt"
	printf 'zones:\n  - origin: consul.\n    records: ["web.service 0 IN A 127.3.0.1", "web.service 0 IN A 127.3.0.2", "web.service 0 IN A 127.3.0.3"]\n' \
		>"$RUN/fleet/static.yaml"
	printf 'consul:\n  address: "127.0.0.1:%s"\n' "$http" >"$RUN/fleet/consul.yaml"
	local static_conf consul_conf
	static_conf=$(fleet_conf static "$RUN/fleet/static.yaml")
	consul_conf=$(fleet_conf consul "$RUN/fleet/consul.yaml")
	if fleet_server fleet static "$static_conf" consul.txt && fleet_server fleet consul "$consul_conf" consul.txt; then
		for p in static consul; do
			kdig @127.0.0.1 -p "${ports[$p]}" +timeout=2 +retry=0 web.service.consul A >"$RUN/fleet/$p-answer.txt" 2>&1 || true
		done
		if [[ $(grep -c 'IN[[:space:]]*A[[:space:]]*127\.3\.0\.' "$RUN/fleet/consul-answer.txt") != 3 ]]; then
			log "fleet: dnsedge does not answer web.service.consul with the three instances, see $RUN/fleet/consul-answer.txt"
		fi
		fleet_rounds "$RUN/fleet.tsv" consul-udp-max static consul
		fleet_rounds "$RUN/fleet.tsv" consul-udp-5k static consul
	else
		printf 'consul-udp-max\t0\tconsul\tdnsedge did not start (see bench/out/run/fleet/)\t-\t-\t-\t-\n' >>"$RUN/fleet.tsv"
	fi
	for p in static consul; do
		[[ -z ${pids[$p]:-} ]] || stop_pid "${pids[$p]}"
	done
	stop_pid "$agent"
}

# fleet_redis: the shared cache. redis-server on the load core and three
# dnsedge servers side by side: "l1" and "l2" share Redis ("l2" with
# cache.max_entries 1, so that its own cache misses nearly every query and
# the hot names come from Redis, where "l1" put them), "miss" has no l2 and
# is asked names never asked before. Then Redis is stopped (SIGSTOP):
# misses on "l1" (now "hung") against "miss" (now "off"); then killed
# (SIGKILL) once "l1"'s breaker is open: "dead" against "off". Both with
# l2 have a fixed budget of 2 ms; the breaker of "l2" does not open. Rows go to fleet.tsv, the servers' l2
# counters before and after each scenario to fleet-l2.tsv.
fleet_redis() {
	local p i redis state
	if ! command -v redis-server >/dev/null; then
		log "fleet: redis-server not found"
		printf 'l2-udp-5k\t0\tl2\tredis-server not found\t-\t-\t-\t-\n' >>"$RUN/fleet.tsv"
		return 0
	fi
	start fleet/redis "$LOAD_CORE" redis-server --port "${FPORTS[17]}" --bind 127.0.0.1 --save "" --appendonly no
	redis=$STARTED_PID
	for ((i = 0; i < 50; i++)); do
		[[ $(redis-cli -p "${FPORTS[17]}" ping 2>/dev/null) != PONG ]] || break
		sleep 0.1
	done
	head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RUN/fleet/fleet.key"
	# min_budget at the budget: the budget stays at its default 2 ms instead
	# of following Redis's p99 down to 250 µs, which on a shared machine
	# lets scheduling hiccups open the breaker and turn L2 hits into
	# upstream queries.
	printf 'cache:\n  enabled: true\n  max_entries: %s\n  l2:\n    redis: {address: "127.0.0.1:%s"}\n    key_file: %s\n    budget: 2ms\n    min_budget: 2ms\n' \
		"@ENTRIES@" "${FPORTS[17]}" "$RUN/fleet/fleet.key" >"$RUN/fleet/l2.yaml.in"
	local conf
	for p in l1 l2 miss; do
		if [[ $p == miss ]]; then
			conf=$(fleet_conf miss "")
		else
			conf=$(fleet_conf "$p" "")
			# The cache section of the template gives way to the one with l2.
			sed -i -e '/^cache:/,/^  max_entries:/d' "$conf"
			if [[ $p == l1 ]]; then i=$MAIN_CACHE_ENTRIES; else i=1; fi
			sed -e "s/@ENTRIES@/$i/" "$RUN/fleet/l2.yaml.in" >>"$conf"
			# The L2 hit server's breaker does not open: a stall of Redis on
			# the shared load core would otherwise send the rest of its
			# rounds to the upstream. The breaker is measured on l1, with
			# its defaults, in the hung and dead rounds.
			[[ $p != l2 ]] || printf '    breaker: {failures: 1000000}\n' >>"$conf"
		fi
		fleet_server fleet "$p" "$conf" hot.txt || break
		if [[ $p == l2 ]]; then
			# "l1" wrote the hot names to Redis when warmed, unless its
			# breaker opened meanwhile (writes are dropped while it is
			# open): "l2", whose breaker stays closed, writes those it did
			# not find, and a second pass finds them all.
			sleep 1
			timeout 60 taskset -c "$LOAD_CORE" nice -n "$NICE" dnsperf -s 127.0.0.1 -p "${ports[l2]}" -d "$RUN/hot.txt" \
				-n 1 -c 1 -q 10 -t 2 >"$RUN/fleet/l2-warm2.txt" 2>&1 || true
		fi
		sleep 1
	done
	if [[ -n ${pids[miss]:-} ]] && kill -0 "${pids[miss]}" 2>/dev/null; then
		fleet_counters l2-udp-5k before
		fleet_rounds "$RUN/fleet.tsv" l2-udp-5k l1 l2 miss
		fleet_counters l2-udp-5k after
		# The hung rounds start from a closed breaker. It is probed once a
		# miss finds it open past its cooldown: misses until it is closed.
		for ((i = 0; i < 100; i++)); do
			state=$(prom "${stats[l1]}" '^dnsedge_l2_breaker_state$')
			[[ $state != 0 ]] || break
			kdig @127.0.0.1 -p "${ports[l1]}" +timeout=1 +retry=0 +short "c$i.bench.test" A >/dev/null 2>&1 || true
			sleep 0.2
		done
		[[ $state == 0 ]] || log "fleet: the breaker of the l1 server is not closed before Redis is stopped (state $state)"
		fleet_counters redis-hung-udp-5k before
		kill -STOP "$redis"
		ports[hung]=${ports[l1]} pids[hung]=${pids[l1]} stats[hung]=${stats[l1]}
		ports[off]=${ports[miss]} pids[off]=${pids[miss]}
		fleet_rounds "$RUN/fleet.tsv" redis-hung-udp-5k off hung
		fleet_counters redis-hung-udp-5k after
		kill -KILL "$redis"
		{ wait "$redis"; } 2>/dev/null || true
		stop_pid "$redis"
		# The breaker opens after a few failed lookups: misses until it has.
		for ((i = 0; i < 50; i++)); do
			state=$(prom "${stats[l1]}" '^dnsedge_l2_breaker_state$')
			[[ $state != 1 ]] || break
			kdig @127.0.0.1 -p "${ports[l1]}" +timeout=1 +retry=0 +short "b$i.bench.test" A >/dev/null 2>&1 || true
			sleep 0.1
		done
		[[ $state == 1 ]] || log "fleet: the breaker did not open after Redis was killed (state $state)"
		ports[dead]=${ports[l1]} pids[dead]=${pids[l1]}
		fleet_counters redis-dead-udp-5k before
		fleet_rounds "$RUN/fleet.tsv" redis-dead-udp-5k off dead
		fleet_counters redis-dead-udp-5k after
	else
		printf 'l2-udp-5k\t0\tl2\tdnsedge did not start (see bench/out/run/fleet/)\t-\t-\t-\t-\n' >>"$RUN/fleet.tsv"
	fi
	for p in l1 l2 miss; do
		[[ -z ${pids[$p]:-} ]] || stop_pid "${pids[$p]}"
	done
	kill -CONT "$redis" 2>/dev/null || true
	stop_pid "$redis"
}

# fleet_counters SCENARIO WHEN: the l2 counters of the servers with l2
# before or after SCENARIO's rounds (WHEN), so the report can tell which way
# their misses went during the rounds.
fleet_counters() {
	local p c
	for p in l1 l2; do
		for c in hits_total misses_total budget_exceeded_total late_hits_total skipped_total breaker_opens_total breaker_state; do
			printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$p" "$2" "$c" "$(prom "${stats[$p]}" "^dnsedge_l2_$c\$")" >>"$RUN/fleet-l2.tsv"
		done
	done
}

# fleet_phase: the fleet rows (fleet_consul, fleet_redis), on ports of
# their own: DNS and metrics for five servers (0-9), the consul agent's
# seven (10-16) and Redis (17).
fleet_phase() {
	local -A ports=() stats=() pids=()
	local -a FPORTS=()
	local i p
	mapfile -t FPORTS < <("$OUT/benchtool" ports 18)
	((${#FPORTS[@]} == 18)) || die "could not find free ports"
	i=0
	for p in static consul l1 l2 miss; do
		ports[$p]=${FPORTS[$i]} stats[$p]=${FPORTS[$((i + 1))]}
		i=$((i + 2))
	done
	rm -rf "$RUN/fleet" "$RUN/fleet.tsv" "$RUN/fleet-l2.tsv"
	mkdir -p "$RUN/fleet"
	fleet_consul
	pids=()
	fleet_redis
}

# ---------------------------------------------------------------- main

install_packages
for cmd in dnsperf named dnsdist unbound kdig taskset go; do
	command -v "$cmd" >/dev/null || die "$cmd not found"
done
if ((ENCRYPTED)); then
	for cmd in h2load openssl curl; do
		command -v "$cmd" >/dev/null || die "$cmd not found (needed for the encrypted rows; BENCH_ENCRYPTED=0 skips them)"
	done
fi
(($(nproc) >= 2)) || log "warning: fewer than 2 cores; pinning falls back to sharing one core"
if (($(nproc) < 2)); then LOAD_CORE=0; fi

LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
rm -rf "$RUN"
mkdir -p "$RUN/named"
: >"$RESULTS"
: >"$SERVERS"
: >"$IDLE"
: >"$CACHEMEM"
CLK_TCK=$(getconf CLK_TCK)

log "building benchtool"
(cd "$ROOT" && go build -o "$OUT/benchtool" ./bench/benchtool)
if ((ENCRYPTED)); then
	(cd "$ROOT" && go build -o "$OUT/quicload" ./bench/quicload)
	make_certs "$RUN/certs"
fi
[[ " $ONLY " != *" dnsedge "* ]] || build_dnsedge
[[ " $ONLY " != *" coredns "* ]] || build_coredns

log "generating zone and query files"
make_data
# One port for named, one for dnsedge's metrics and one per server, so a
# server never binds a port the previous one left in TIME_WAIT.
# dnsedge's, dnsdist's and unbound's encrypted listeners get two more each:
# DoT (and DoQ on UDP) and DoH (and DoH3 on UDP); unbound's are 17 and 18. The
# validation phase has 23-25, and its paired servers 26-29 (DNS, then
# metrics). The
# cache memory phase has its own (10-16): one per server, and one for each
# endpoint that counts entries. The policy phase's two servers have 19-22
# (DNS, then metrics).
mapfile -t PORTS < <("$OUT/benchtool" ports 30)
((${#PORTS[@]} == 30)) || die "could not find free ports"
NAMED_PORT=${PORTS[0]}
METRICS_PORT=${PORTS[1]}

render named.conf.in "$RUN/named/named.conf" DIR="$RUN/named" PORT="$NAMED_PORT"
if ((DNSSEC)); then
	printf 'zone "signed.test" {\n\ttype primary;\n\tfile "%s/signed.test.zone";\n};\n' "$RUN/named" >"$RUN/named/signed.conf"
	splice "$RUN/named/named.conf" SIGNED_ZONE "$RUN/named/signed.conf"
else
	splice "$RUN/named/named.conf" SIGNED_ZONE
fi
start named "$LOAD_CORE" named -g -4 -n 1 -c "$RUN/named/named.conf"
NAMED_PID=$STARTED_PID
wait_ready "$NAMED_PORT" "$NAMED_PID" || die "named did not start, see bench/out/run/named.log"
NAMED_VERSION=$(named -v | awk '{ print $1, $2 }')

if ((MAIN)); then
	log "upstream direct"
	mkdir -p "$RUN/named-direct"
	measure miss-udp-5k named-direct "$NAMED_PORT" "$NAMED_PID" "$RUN/miss-rate.txt" rate ||
		die "named exited, see bench/out/run/named.log"
	measure miss-udp-max named-direct "$NAMED_PORT" "$NAMED_PID" "$RUN/miss-max.txt" max ||
		die "named exited, see bench/out/run/named.log"
fi

for server in $ONLY; do
	case $server in
	dnsedge) port=${PORTS[2]} ;;
	dnsdist) port=${PORTS[3]} ;;
	unbound) port=${PORTS[4]} ;;
	coredns) port=${PORTS[5]} ;;
	esac
	case $server in
	dnsedge)
		ENC_DOT_PORT="" ENC_DOH_PORT="" QUIC_STATUS=ok IDLE_STATUS=ok
		render dnsedge.yaml.in "$RUN/dnsedge.yaml" PORT="$port" UPSTREAM_PORT="$NAMED_PORT" METRICS_PORT="$METRICS_PORT" \
			PPROF="$([[ $PROFILE == 1 ]] && echo true || echo false)" CACHE_ENTRIES="$MAIN_CACHE_ENTRIES"
		splice "$RUN/dnsedge.yaml" CACHE_MAX_BYTES
		splice "$RUN/dnsedge.yaml" EXTRA_GROUPS
		splice "$RUN/dnsedge.yaml" POLICY
		if ((ENCRYPTED)); then
			ENC_DOT_PORT=${PORTS[6]} ENC_DOH_PORT=${PORTS[7]}
			render dnsedge-encrypted.yaml.in "$RUN/dnsedge-encrypted.yaml" DOT_PORT="$ENC_DOT_PORT" DOH_PORT="$ENC_DOH_PORT" \
				CERT="$CERTS/cert.pem" KEY="$CERTS/key.pem"
			splice "$RUN/dnsedge.yaml" ENCRYPTED "$RUN/dnsedge-encrypted.yaml"
		else
			splice "$RUN/dnsedge.yaml" ENCRYPTED
		fi
		version="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
		[[ -z $(git -C "$ROOT" status --porcelain 2>/dev/null) ]] || version+="+dirty"
		if [[ $DNSEDGE_STATUS == ok ]]; then
			version="$(timeout 5 "$OUT/dnsedge" version 2>/dev/null | head -n1 || true) ($version)"
		else
			version="dnsedge ($version)"
		fi
		bench_server dnsedge "$DNSEDGE_STATUS" "$version" "$port" \
			"$OUT/dnsedge" serve -config "$RUN/dnsedge.yaml"
		if ((MAIN && ENCRYPTED)) && [[ $DNSEDGE_STATUS == ok ]]; then
			# dnsedge serve sets its own GC target (a headroom of the
			# live heap up to 64 MiB, then 64 MiB, then half of it; 16-256
			# MiB); this row shows what GOGC=100 (the Go
			# default, which turns that target off) gives for the same
			# connections.
			mkdir -p "$RUN/dnsedge-gogc100"
			start dnsedge-gogc100 "$SERVER_CORE" env GOGC=100 "$OUT/dnsedge" serve -config "$RUN/dnsedge.yaml"
			if wait_ready "$port" "$STARTED_PID"; then
				warm dnsedge-gogc100 "$port"
				idle_memory dnsedge-gogc100 "$STARTED_PID" "$ENC_DOT_PORT"
			fi
			stop_pid "$STARTED_PID"
		fi
		if [[ $DNSEDGE_STATUS == ok ]] && ((POLICY_RULES > 0)); then
			log "policy phase"
			policy_phase
			canary_phase
			carry_cost
		fi
		if [[ $DNSEDGE_STATUS == ok ]] && ((MAIN)); then
			histogram_cost
		fi
		;;
	dnsdist)
		render dnsdist.conf.in "$RUN/dnsdist.conf" PORT="$port" UPSTREAM_PORT="$NAMED_PORT" \
			CACHE_ENTRIES="$MAIN_CACHE_ENTRIES" CACHE_OPTIONS=""
		ENC_DOT_PORT="" ENC_DOH_PORT="" IDLE_STATUS=ok
		QUIC_STATUS="not supported by $(dnsdist --version | awk 'NR == 1 { print $1, $2 }')"
		if ((ENCRYPTED)); then
			ENC_DOT_PORT=${PORTS[8]} ENC_DOH_PORT=${PORTS[9]}
			render dnsdist-encrypted.conf.in "$RUN/dnsdist-encrypted.conf" DOT_PORT="$ENC_DOT_PORT" DOH_PORT="$ENC_DOH_PORT" \
				CERT="$CERTS/cert.pem" KEY="$CERTS/key.pem"
			cat "$RUN/dnsdist-encrypted.conf" >>"$RUN/dnsdist.conf"
		fi
		bench_server dnsdist ok "$(dnsdist --version | awk 'NR == 1 { print $1, $2 }')" "$port" \
			dnsdist --supervised --disable-syslog -C "$RUN/dnsdist.conf"
		;;
	unbound)
		version="unbound $(unbound -V | awk 'NR == 1 { print $2 }')"
		ENC_DOT_PORT="" ENC_DOH_PORT="" QUIC_STATUS="not supported by $version"
		mkdir -p "$RUN/unbound"
		render unbound.conf.in "$RUN/unbound/unbound.conf" DIR="$RUN/unbound" PORT="$port" UPSTREAM_PORT="$NAMED_PORT" \
			MSG_CACHE=128m RRSET_CACHE=256m STATS=no
		splice "$RUN/unbound/unbound.conf" VALIDATOR
		if ((ENCRYPTED)); then
			# DoT and DoH over HTTP/2 (unbound is built with libnghttp2 in
			# Debian), on the same certificate as dnsedge and dnsdist. unbound
			# serves at most incoming-num-tcp (64) connections per port, as
			# configured for the TCP row, so it has no idle-connection line.
			ENC_DOT_PORT=${PORTS[17]} ENC_DOH_PORT=${PORTS[18]}
			IDLE_STATUS="not run: unbound serves at most incoming-num-tcp (64 here) connections per port"
			render unbound-encrypted.conf.in "$RUN/unbound/encrypted.conf" DOT_PORT="$ENC_DOT_PORT" DOH_PORT="$ENC_DOH_PORT" \
				CERT="$CERTS/cert.pem" KEY="$CERTS/key.pem"
			splice "$RUN/unbound/unbound.conf" ENCRYPTED "$RUN/unbound/encrypted.conf"
		else
			splice "$RUN/unbound/unbound.conf" ENCRYPTED
		fi
		unbound-checkconf "$RUN/unbound/unbound.conf" >"$RUN/unbound/checkconf.log" 2>&1 ||
			log "unbound: unbound-checkconf rejects the configuration, see bench/out/run/unbound/checkconf.log"
		bench_server unbound ok "$version" "$port" \
			unbound -d -c "$RUN/unbound/unbound.conf"
		;;
	coredns)
		ENC_DOT_PORT="" ENC_DOH_PORT=""
		render Corefile.in "$RUN/Corefile" PORT="$port" UPSTREAM_PORT="$NAMED_PORT" CACHE_ENTRIES="$MAIN_CACHE_ENTRIES"
		splice "$RUN/Corefile" PROMETHEUS
		version="CoreDNS $COREDNS_VERSION"
		[[ $COREDNS_STATUS != ok ]] || version=$("$COREDNS_BIN" -version | awk 'NR == 1')
		bench_server coredns "$COREDNS_STATUS" "$version" "$port" \
			"$COREDNS_BIN" -conf "$RUN/Corefile" -quiet
		;;
	esac
done

if ((DNSSEC)); then
	log "validation phase"
	dnssec_phase
fi

if ((FLEET)) && [[ " $ONLY " == *" dnsedge "* && $DNSEDGE_STATUS == ok ]]; then
	log "fleet phase"
	fleet_phase
fi

if ((SIDECAR_PAIRS)) && [[ " $ONLY " == *" dnsedge "* && " $ONLY " == *" dnsdist "* && $DNSEDGE_STATUS == ok ]]; then
	log "sidecar phase: dnsedge against dnsdist in paired rounds"
	sidecar_phase
fi

if [[ -n ${BENCH_BASE:-} && " $ONLY " == *" dnsedge "* && $DNSEDGE_STATUS == ok ]]; then
	log "base phase: against $BENCH_BASE"
	base_phase
fi

CACHE_PHASE_SECS=-
if ((CACHE_MEM)); then
	log "cache memory phase"
	CACHE_PHASE_SECS=$SECONDS
	cache_phase
	CACHE_PHASE_SECS=$((SECONDS - CACHE_PHASE_SECS))
	log "cache memory phase took $CACHE_PHASE_SECS s"
fi

[[ " $ONLY " != *" dnsedge "* ]] || source "$BENCH_DIR/upgrade.sh" # upgrade time: $RUN/upgrade.tsv
printf '%s\t%s\t%s\t%s\t%s\n' named-direct "$NAMED_VERSION" ok "$(peak_rss_kib "$NAMED_PID")" \
	"upstream, on core $LOAD_CORE; peak RSS after serving every server's misses" >>"$SERVERS"
stop_pid "$NAMED_PID"

{
	printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
	printf 'cpu\t%s\n' "$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
	printf 'nproc\t%s\n' "$(nproc)"
	printf 'memory\t%s\n' "$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	printf 'os\t%s\n' "$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release)"
	printf 'kernel\t%s\n' "$(uname -r)"
	printf 'go\t%s%s\n' "$(go env GOVERSION)" "${GOMAXPROCS_SET:+; GOMAXPROCS=$GOMAXPROCS_SET for the Go servers (BENCH_GOMAXPROCS)}"
	printf 'load average\t%s at start, %s at end (1, 5, 15 min)\n' "$LOAD_AT_START" "$(cut -d' ' -f1-3 /proc/loadavg)"
	printf 'dnsperf\t%s\n' "$(dnsperf -h 2>&1 | awk '/^Version/ { print $2 }')"
	printf 'seconds\t%s\n' "$SECS"
	printf 'pair_rounds\t%s\n' "$PAIR_ROUNDS"
	printf 'pair_seconds\t%s\n' "$PAIR_SECS"
	printf 'pair_together\t%s\n' "$PAIR_TOGETHER"
	printf 'nice\t%s\n' "$NICE"
	printf 'max_args\t%s\n' "${MAX_ARGS[*]}"
	printf 'rate_args\t%s\n' "${RATE_ARGS[*]}"
	printf 'low_args\t%s\n' "${LOW_ARGS[*]}"
	printf 'low_seconds\t%s\n' "$LOW_SECS"
	printf 'encrypted\t%s\n' "$ENCRYPTED"
	printf 'h2_max_args\t%s\n' "${H2_MAX_ARGS[*]}"
	printf 'h2_rate_args\t%s\n' "${H2_RATE_ARGS[*]}"
	printf 'h2_miss_rate_args\t%s\n' "${H2_MISS_RATE_ARGS[*]}"
	printf 'ql_max_args\t%s\n' "${QL_MAX_ARGS[*]}"
	printf 'ql_rate_args\t%s\n' "${QL_RATE_ARGS[*]}"
	printf 'h2load\t%s\n' "$(h2load --version 2>/dev/null | head -n1 || echo -)"
	printf 'idle_conns\t%s\n' "$IDLE_CONNS"
	printf 'clk_tck\t%s\n' "$CLK_TCK"
	printf 'tick_us\t%s\n' "$((1000000 / CLK_TCK))"
	printf 'zone_records\t%s\n' "$ZONE_RECORDS"
	printf 'zone_last\t%s\n' "$((ZONE_RECORDS - 1))"
	printf 'hot_names\t%s\n' "$HOT_NAMES"
	printf 'hot_last\t%s\n' "$((HOT_NAMES - 1))"
	printf 'main_cache_entries\t%s\n' "$MAIN_CACHE_ENTRIES"
	printf 'cache_names\t%s\n' "$CACHE_NAMES"
	printf 'cache_last\t%s\n' "$((CACHE_NAMES - 1))"
	printf 'cache_entries\t%s\n' "$CACHE_ENTRIES"
	printf 'cache_max_bytes\t%s\n' "$CACHE_MAX_BYTES"
	printf 'cache_seconds\t%s\n' "$CACHE_SECS"
	printf 'cache_args\t%s\n' "${CACHE_ARGS[*]}"
	printf 'cache_phase_seconds\t%s\n' "$CACHE_PHASE_SECS"
	printf 'unbound_cache\tmsg-cache-size %s, rrset-cache-size %s\n' "$UNBOUND_MSG_CACHE" "$UNBOUND_RRSET_CACHE"
} >"$RUN/meta.tsv"

"$OUT/benchtool" report -dir "$RUN" -out "$REPORT" -analysis "$BENCH_DIR/ANALYSIS.md"
log "wrote $REPORT"
