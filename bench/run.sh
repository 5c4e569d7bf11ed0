#!/usr/bin/env bash
# Load benchmark: dnsedge against dnsdist, unbound and CoreDNS, each a caching
# forwarder in front of the same BIND named, measured with dnsperf. Writes
# BENCHMARKS.md at the repository root and keeps raw output in bench/out/.
#
# Everything binds 127.0.0.1 on ports picked at run time; every dnsperf run
# is bounded by -l and by timeout(1).
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
#
# Quick smoke run: BENCH_SECONDS=2 bash bench/run.sh
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT=$BENCH_DIR/out
RUN=$OUT/run
REPORT=$ROOT/BENCHMARKS.md

SECS=${BENCH_SECONDS:-10}
ALL_SERVERS="dnsedge dnsdist unbound coredns"
ONLY=${BENCH_ONLY:-$ALL_SERVERS}
COREDNS_VERSION=${BENCH_COREDNS_VERSION:-v1.15.0}
NICE=${BENCH_NICE:-0}

# The server under test gets core 0 to itself; dnsperf and the upstream named
# share core 1 (cache-hit runs never reach named).
SERVER_CORE=0
LOAD_CORE=1

ZONE_RECORDS=10000 # h0..h9999 plus a wildcard
HOT_NAMES=1000     # cache-hit set: h0..h999
RATE=5000          # fixed-rate latency runs
CLIENTS=4
OUTSTANDING=200
MAX_ARGS=(-T 1 -c "$CLIENTS" -q "$OUTSTANDING" -t 2)
RATE_ARGS=(-T 1 -c "$CLIENTS" -q 100 -t 2 -Q "$RATE")

# named, unbound and dnsdist live in sbin, which a non-root PATH may lack.
PATH=$PATH:/usr/sbin:/sbin

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

if ! [[ $SECS =~ ^[0-9]+$ ]] || ((SECS < 1 || SECS > 120)); then
	die "BENCH_SECONDS must be 1..120, got '$SECS'"
fi
if ! [[ $NICE =~ ^-?[0-9]+$ ]] || ((NICE < -20 || NICE > 19)); then
	die "BENCH_NICE must be -20..19, got '$NICE'"
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
# CMD's.
start() {
	local name=$1 core=$2
	shift 2
	taskset -c "$core" nice -n "$NICE" "$@" >"$RUN/$name.log" 2>&1 &
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

# ---------------------------------------------------------------- tools

install_packages() {
	local need=() pair cmd pkg sudo=""
	for pair in dnsperf:dnsperf named:bind9 dnsdist:dnsdist unbound:unbound kdig:knot-dnsutils taskset:util-linux ps:procps; do
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

# ---------------------------------------------------------------- data

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
	awk -v n="$n_miss_max" 'BEGIN { for (i = 0; i < n; i++) printf "m%d.bench.test A\n", i }' >"$RUN/miss-max.txt"
}

# ---------------------------------------------------------------- measuring

RESULTS=$RUN/results.tsv
SERVERS=$RUN/servers.tsv

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

# measure SCENARIO SERVER PORT PID QUERYFILE MODE: MODE is max, tcp or rate.
measure() {
	local sc=$1 server=$2 port=$3 pid=$4 data=$5 mode=$6
	local raw=$RUN/$server/$sc.txt args=() before after rc=0
	case $mode in
	max) args=("${MAX_ARGS[@]}") ;;
	tcp) args=("${MAX_ARGS[@]}" -m tcp) ;;
	rate) args=("${RATE_ARGS[@]}" -v) ;;
	esac
	[[ $sc != miss-* ]] || args+=(-n 1)
	local c0_task c0_total c1_busy c1_total c0_task2 c0_total2 c1_busy2 c1_total2
	log "$server: $sc"
	read -r c0_task _ c0_total <<<"$(core_ticks "$SERVER_CORE")"
	read -r _ c1_busy c1_total <<<"$(core_ticks "$LOAD_CORE")"
	before=$(cpu_ticks "$pid")
	timeout $((SECS + 30)) taskset -c "$LOAD_CORE" nice -n "$NICE" \
		dnsperf -s 127.0.0.1 -p "$port" -d "$data" -l "$SECS" "${args[@]}" >"$raw" 2>&1 || rc=$?
	if ! kill -0 "$pid" 2>/dev/null; then
		row "$sc" "$server" "server exited (see bench/out/run/$server.log)"
		return 1
	fi
	after=$(cpu_ticks "$pid")
	read -r c0_task2 _ c0_total2 <<<"$(core_ticks "$SERVER_CORE")"
	read -r _ c1_busy2 c1_total2 <<<"$(core_ticks "$LOAD_CORE")"
	if ((rc != 0)) || ! grep -q 'Queries completed:' "$raw"; then
		row "$sc" "$server" "dnsperf failed (exit $rc)"
		return 0
	fi
	local sent completed lost qps runtime cpu p50=- p99=- note=""
	sent=$(awk '/Queries sent:/ { print $3 }' "$raw")
	completed=$(awk '/Queries completed:/ { print $3 }' "$raw")
	lost=$(awk '/Queries lost:/ { gsub(/[()%]/, "", $4); print $4 }' "$raw")
	qps=$(awk '/Queries per second:/ { print $4 }' "$raw")
	runtime=$(awk '/Run time \(s\):/ { print $4 }' "$raw")
	cpu=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$completed" \
		'BEGIN { if (n > 0) printf "%.2f", t * 1e6 / hz / n; else print "-" }')
	if [[ $mode == rate ]]; then
		read -r p50 p99 _ <<<"$("$OUT/benchtool" latency "$raw")"
	fi
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
	if grep -q 'Testing complete (end of file)' "$raw"; then
		note="query file ran out after ${runtime} s"
	fi
	local rcodes
	rcodes=$(sed -n 's/^ *Response codes: *//p' "$raw")
	if [[ $rcodes != "NOERROR "*"(100.00%)" ]]; then
		note="${note:+$note; }rcodes: ${rcodes:-none}"
	fi
	if ((other_pct > 10)); then
		note="${note:+$note; }other processes used ${other_pct}% of core $SERVER_CORE"
	fi
	row "$sc" "$server" ok "$qps" "$sent" "$completed" "$lost" "$cpu" "$p50" "$p99" "$server_pct" "$load_pct" "$note"
	sleep 1 # let queues drain before the next run
}

# warm SERVER PORT: asks the hot set once, gently.
warm() {
	timeout 60 taskset -c "$LOAD_CORE" nice -n "$NICE" dnsperf -s 127.0.0.1 -p "$2" -d "$RUN/hot.txt" -n 1 -c 1 -q 10 -t 2 \
		>"$RUN/$1/warm.txt" 2>&1 || true
}

SCENARIOS="hit-udp-5k miss-udp-5k hit-udp-max hit-tcp-max miss-udp-max"

# bench_server NAME STATUS VERSION PORT CMD...: unless STATUS says why not,
# starts CMD (which must listen on PORT), runs every scenario, records peak
# RSS and stops it.
bench_server() {
	local name=$1 status=$2 version=$3 port=$4
	shift 4
	local sc
	mkdir -p "$RUN/$name"
	if [[ $status == ok ]]; then
		start "$name" "$SERVER_CORE" "$@"
		if ! wait_ready "$port" "$STARTED_PID"; then
			status="failed to start"
			log "$name: $status, see bench/out/run/$name.log"
			stop_pid "$STARTED_PID"
		fi
	fi
	if [[ $status != ok ]]; then
		for sc in $SCENARIOS; do
			row "$sc" "$name" "$status"
		done
		printf '%s\t%s\t%s\t-\t%s\n' "$name" "$version" "$status" "" >>"$SERVERS"
		return 0
	fi
	local pid=$STARTED_PID note="" data mode
	warm "$name" "$port"
	for sc in $SCENARIOS; do
		if [[ -n $note ]]; then
			row "$sc" "$name" "not run: server exited earlier"
			continue
		fi
		case $sc in
		hit-udp-5k) data=hot.txt mode=rate ;;
		miss-udp-5k) data=miss-rate.txt mode=rate ;;
		hit-udp-max) data=hot.txt mode=max ;;
		hit-tcp-max) data=hot.txt mode=tcp ;;
		miss-udp-max) data=miss-max.txt mode=max ;;
		esac
		measure "$sc" "$name" "$port" "$pid" "$RUN/$data" "$mode" || note="exited during the runs"
	done
	local rss=-
	kill -0 "$pid" 2>/dev/null && rss=$(peak_rss_kib "$pid")
	printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$version" "${note:-ok}" "$rss" "" >>"$SERVERS"
	stop_pid "$pid"
}

# ---------------------------------------------------------------- main

install_packages
for cmd in dnsperf named dnsdist unbound kdig taskset go; do
	command -v "$cmd" >/dev/null || die "$cmd not found"
done
(($(nproc) >= 2)) || log "warning: fewer than 2 cores; pinning falls back to sharing one core"
if (($(nproc) < 2)); then LOAD_CORE=0; fi

LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
rm -rf "$RUN"
mkdir -p "$RUN/named"
: >"$RESULTS"
: >"$SERVERS"
CLK_TCK=$(getconf CLK_TCK)

log "building benchtool"
(cd "$ROOT" && go build -o "$OUT/benchtool" ./bench/benchtool)
[[ " $ONLY " != *" dnsedge "* ]] || build_dnsedge
[[ " $ONLY " != *" coredns "* ]] || build_coredns

log "generating zone and query files"
make_data
# One port for named, one for dnsedge's metrics and one per server, so a
# server never binds a port the previous one left in TIME_WAIT.
mapfile -t PORTS < <("$OUT/benchtool" ports 6)
((${#PORTS[@]} == 6)) || die "could not find free ports"
NAMED_PORT=${PORTS[0]}
METRICS_PORT=${PORTS[1]}

render named.conf.in "$RUN/named/named.conf" DIR="$RUN/named" PORT="$NAMED_PORT"
start named "$LOAD_CORE" named -g -4 -n 1 -c "$RUN/named/named.conf"
NAMED_PID=$STARTED_PID
wait_ready "$NAMED_PORT" "$NAMED_PID" || die "named did not start, see bench/out/run/named.log"
NAMED_VERSION=$(named -v | awk '{ print $1, $2 }')

log "upstream direct"
mkdir -p "$RUN/named-direct"
measure miss-udp-5k named-direct "$NAMED_PORT" "$NAMED_PID" "$RUN/miss-rate.txt" rate ||
	die "named exited, see bench/out/run/named.log"
measure miss-udp-max named-direct "$NAMED_PORT" "$NAMED_PID" "$RUN/miss-max.txt" max ||
	die "named exited, see bench/out/run/named.log"

for server in $ONLY; do
	case $server in
	dnsedge) port=${PORTS[2]} ;;
	dnsdist) port=${PORTS[3]} ;;
	unbound) port=${PORTS[4]} ;;
	coredns) port=${PORTS[5]} ;;
	esac
	case $server in
	dnsedge)
		render dnsedge.yaml.in "$RUN/dnsedge.yaml" PORT="$port" UPSTREAM_PORT="$NAMED_PORT" METRICS_PORT="$METRICS_PORT"
		version="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
		[[ -z $(git -C "$ROOT" status --porcelain 2>/dev/null) ]] || version+="+dirty"
		if [[ $DNSEDGE_STATUS == ok ]]; then
			version="$(timeout 5 "$OUT/dnsedge" version 2>/dev/null | head -n1 || true) ($version)"
		else
			version="dnsedge ($version)"
		fi
		bench_server dnsedge "$DNSEDGE_STATUS" "$version" "$port" \
			"$OUT/dnsedge" serve -config "$RUN/dnsedge.yaml"
		;;
	dnsdist)
		render dnsdist.conf.in "$RUN/dnsdist.conf" PORT="$port" UPSTREAM_PORT="$NAMED_PORT"
		bench_server dnsdist ok "$(dnsdist --version | awk 'NR == 1 { print $1, $2 }')" "$port" \
			dnsdist --supervised --disable-syslog -C "$RUN/dnsdist.conf"
		;;
	unbound)
		mkdir -p "$RUN/unbound"
		render unbound.conf.in "$RUN/unbound/unbound.conf" DIR="$RUN/unbound" PORT="$port" UPSTREAM_PORT="$NAMED_PORT"
		bench_server unbound ok "unbound $(unbound -V | awk 'NR == 1 { print $2 }')" "$port" \
			unbound -d -c "$RUN/unbound/unbound.conf"
		;;
	coredns)
		render Corefile.in "$RUN/Corefile" PORT="$port" UPSTREAM_PORT="$NAMED_PORT"
		version="CoreDNS $COREDNS_VERSION"
		[[ $COREDNS_STATUS != ok ]] || version=$("$COREDNS_BIN" -version | head -n1)
		bench_server coredns "$COREDNS_STATUS" "$version" "$port" \
			"$COREDNS_BIN" -conf "$RUN/Corefile" -quiet
		;;
	esac
done

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
	printf 'go\t%s\n' "$(go env GOVERSION)"
	printf 'load average\t%s at start, %s at end (1, 5, 15 min)\n' "$LOAD_AT_START" "$(cut -d' ' -f1-3 /proc/loadavg)"
	printf 'dnsperf\t%s\n' "$(dnsperf -h 2>&1 | awk '/^Version/ { print $2 }')"
	printf 'seconds\t%s\n' "$SECS"
	printf 'nice\t%s\n' "$NICE"
	printf 'max_args\t%s\n' "${MAX_ARGS[*]}"
	printf 'rate_args\t%s\n' "${RATE_ARGS[*]}"
	printf 'clk_tck\t%s\n' "$CLK_TCK"
	printf 'tick_us\t%s\n' "$((1000000 / CLK_TCK))"
	printf 'zone_records\t%s\n' "$ZONE_RECORDS"
	printf 'zone_last\t%s\n' "$((ZONE_RECORDS - 1))"
	printf 'hot_names\t%s\n' "$HOT_NAMES"
	printf 'hot_last\t%s\n' "$((HOT_NAMES - 1))"
} >"$RUN/meta.tsv"

"$OUT/benchtool" report -dir "$RUN" -out "$REPORT" -analysis "$BENCH_DIR/ANALYSIS.md"
log "wrote $REPORT"
