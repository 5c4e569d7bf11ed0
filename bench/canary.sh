# shellcheck shell=bash
# The canary's cost: dnsedge with a canary sampling 5 % of the queries (1 %
# of them resolved through the candidate and again as the control) against
# the same dnsedge without one, in paired rounds. The goal is at most 5 %
# more server CPU per query.
#
# Sourced by bench/run.sh, which runs canary_phase after the policy phase
# (rows to canary.tsv, in the columns of policy.tsv: scenario, round, side,
# status, queries completed, server CPU in ns). Run on its own,
#
#   bash bench/canary.sh [ROUNDS] [SECONDS]
#
# it makes a quick measurement without the rest of the benchmark: a dnsedge
# serving a wildcard zone is the upstream, dnsperf the load, and it prints
# each round's CPU per query of both servers and the median ratio.

CANARY_SCENARIOS=${BENCH_CANARY_SCENARIOS:-"hit-udp-max hit-udp-5k miss-udp-5k"}
CANARY_TOKEN=bench-canary-token

# canary_admin_yaml PORT: an admin section whose one token may operate.
canary_admin_yaml() {
	local sum
	sum=$(printf %s "$CANARY_TOKEN" | sha256sum | awk '{ print $1 }')
	printf 'admin:\n  address: "127.0.0.1:%s"\n  tokens:\n    - {id: bench, access: admin, zones: ["*"], sha256: %s}\n' "$1" "$sum"
	# The canary never ends during the rounds: a long window, and
	# thresholds it cannot cross.
	printf 'canary:\n  auto_promote: false\n  thresholds: {min_samples: 100000000, window: 24h}\n'
	printf 'rollback: {enabled: false}\n'
}

# canary_start DNSEDGE ADMIN_PORT: starts a canary of the file the server
# runs with on 5 % of its queries.
canary_start() {
	DNSEDGE_ADMIN_TOKEN=$CANARY_TOKEN timeout 30 "$1" reload -admin "http://127.0.0.1:$2" -canary 5% -answer-share 1% -manual
}

# canary_phase: two dnsedge servers on the same configuration, both with an
# admin listener; "on" runs a canary of its own file (an unchanged
# configuration, so the samples are what they cost, not what they find).
canary_phase() {
	local side conf
	local -a cports=()
	mapfile -t cports < <("$OUT/benchtool" ports 6)
	((${#cports[@]} == 6)) || { log "canary phase: no free ports"; return 0; }
	local -A ports=([off]=${cports[0]} [on]=${cports[1]}) stats=([off]=${cports[2]} [on]=${cports[3]}) admins=([off]=${cports[4]} [on]=${cports[5]}) pids=()
	rm -f "$RUN/canary.tsv"
	for side in off on; do
		conf=$RUN/dnsedge-canary-$side.yaml
		render dnsedge.yaml.in "$conf" PORT="${ports[$side]}" UPSTREAM_PORT="$NAMED_PORT" METRICS_PORT="${stats[$side]}" \
			PPROF=false CACHE_ENTRIES="$MAIN_CACHE_ENTRIES"
		splice "$conf" CACHE_MAX_BYTES
		splice "$conf" ENCRYPTED
		splice "$conf" EXTRA_GROUPS
		canary_admin_yaml "${admins[$side]}" >"$RUN/canary-admin-$side.yaml"
		splice "$conf" POLICY "$RUN/canary-admin-$side.yaml"
	done
	if WARM=hot.txt pair_servers canary off on "$RUN/dnsedge-canary-off.yaml" "$RUN/dnsedge-canary-on.yaml"; then
		if canary_start "$OUT/dnsedge" "${admins[on]}" >"$RUN/canary-start.json" 2>&1; then
			pair_rounds "$RUN/canary.tsv" off on $CANARY_SCENARIOS
			DNSEDGE_ADMIN_TOKEN=$CANARY_TOKEN timeout 30 "$OUT/dnsedge" reload -admin "http://127.0.0.1:${admins[on]}" -status \
				>"$RUN/canary-status.json" 2>&1 || true
		else
			log "canary phase: the canary did not start, see bench/out/run/canary-start.json"
			printf 'canary\t0\ton\tcanary did not start\t-\t-\n' >>"$RUN/canary.tsv"
		fi
	fi
	for side in off on; do
		[[ -z ${pids[$side]:-} ]] || stop_pid "${pids[$side]}"
	done
}

# canary_quick ROUNDS SECONDS: the stand-alone measurement.
canary_quick() {
	local rounds=${1:-10} secs=${2:-3} root dir bin i side r first second raw
	root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	dir=$(mktemp -d)
	# shellcheck disable=SC2064 # dir is expanded now, on purpose
	trap "kill \$(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf '$dir'" EXIT
	bin=$dir/dnsedge
	(cd "$root" && go build -o "$bin" ./cmd/dnsedge) || return 1
	local -a p=()
	for i in 1 2 3 4 5 6 7; do
		p+=("$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')")
	done
	cat >"$dir/up.yaml" <<-EOT
		listeners: [{proto: udp, address: "127.0.0.1:${p[0]}"}, {proto: tcp, address: "127.0.0.1:${p[0]}"}]
		upstreams: [{name: none, url: "udp://127.0.0.1:9"}]
		zones: [{origin: bench.test., records: ["@ 300 IN SOA ns host 1 3600 600 86400 300", "* 300 IN A 192.0.2.1"]}]
		cache: {enabled: false}
		log: {level: error}
	EOT
	local -A port=([off]=${p[1]} [on]=${p[2]}) admin=([off]=${p[3]} [on]=${p[4]}) pid=()
	for side in off on; do
		{
			printf 'listeners: [{proto: udp, address: "127.0.0.1:%s"}]\n' "${port[$side]}"
			printf 'upstreams: [{name: auth, url: "udp://127.0.0.1:%s"}]\n' "${p[0]}"
			printf 'state_dir: %s/state-%s\nlog: {level: warn}\n' "$dir" "$side"
			canary_admin_yaml "${admin[$side]}"
		} >"$dir/$side.yaml"
	done
	XDG_STATE_HOME=$dir "$bin" serve -config "$dir/up.yaml" >"$dir/up.log" 2>&1 &
	for side in off on; do
		taskset -c 0 "$bin" serve -config "$dir/$side.yaml" >"$dir/$side.log" 2>&1 &
		pid[$side]=$!
	done
	sleep 1
	for i in $(seq 1 2000); do printf 'h%d.bench.test A\n' "$i"; done >"$dir/hot.txt"
	for side in off on; do
		taskset -c 1 dnsperf -s 127.0.0.1 -p "${port[$side]}" -d "$dir/hot.txt" -n 1 -c 1 -q 10 -t 2 >/dev/null 2>&1
	done
	canary_start "$bin" "${admin[on]}" >"$dir/start.json" || { cat "$dir/start.json"; return 1; }
	printf 'round\tside\tqueries\tcpu_ns_per_query\n'
	for ((r = 1; r <= rounds; r++)); do
		first=off second=on
		((r % 2)) || first=on second=off
		for side in $first $second; do
			raw=$dir/r$r-$side.txt
			local before after
			before=$(cat /proc/"${pid[$side]}"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f\n", s }')
			timeout $((secs + 20)) taskset -c 1 dnsperf -s 127.0.0.1 -p "${port[$side]}" -d "$dir/hot.txt" -l "$secs" -T 1 -c 4 -q 100 -t 2 >"$raw" 2>&1
			after=$(cat /proc/"${pid[$side]}"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f\n", s }')
			printf '%s\t%s\t%s\t%s\n' "$r" "$side" "$(awk '/Queries completed:/ { print $3 }' "$raw")" \
				"$(awk -v c=$((after - before)) '/Queries completed:/ { printf "%.0f", c / $3 }' "$raw")"
		done
	done | tee "$dir/rounds.tsv"
	awk -F'\t' 'NR > 1 { v[$1, $2] = $4; n = $1 } END { for (r = 1; r <= n; r++) print v[r, "on"] / v[r, "off"] }' "$dir/rounds.tsv" |
		sort -n | awk '{ x[NR] = $1 } END {
			m = (NR % 2) ? x[(NR + 1) / 2] : (x[NR / 2] + x[NR / 2 + 1]) / 2
			printf "median CPU per query, canary at 5%% / none: %.3f over %d rounds\n", m, NR }'
	DNSEDGE_ADMIN_TOKEN=$CANARY_TOKEN "$bin" reload -admin "http://127.0.0.1:${admin[on]}" -status |
		grep -E '"(state|decisions|answers|controls|dropped_queue_full|dropped_rate_limited)"' || true
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	set -euo pipefail
	canary_quick "$@"
fi
