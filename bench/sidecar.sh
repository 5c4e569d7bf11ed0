# shellcheck shell=bash
# dnsedge against dnsdist in paired rounds: the sidecar-cost scenarios that
# one measurement per server cannot decide on a noisy machine. The fixed-rate
# rows leave the server core idle most of the time, and what a query costs
# there moves with the machine: dnsdist's own 5,000 qps figure moved by a
# quarter between two runs of this benchmark. Here both servers run side by
# side on the server core, on the main rows' configurations, and each round
# measures both (the fixed-rate rounds at the same time; see pair_rounds).
# Rows to sidecar-pairs.tsv in the columns of policy.tsv; sides "dnsdist" and
# "dnsedge". Sourced by bench/run.sh, which runs sidecar_phase when both
# servers are measured and BENCH_SIDECAR_PAIRS is not 0.

SIDECAR_SCENARIOS=${BENCH_SIDECAR_SCENARIOS:-"hit-udp-max miss-udp-max hit-tcp-max hit-udp-5k miss-udp-5k hit-udp-100 miss-udp-100"}

sidecar_phase() {
	local side
	local -a sports=()
	rm -f "$RUN/sidecar-pairs.tsv"
	mapfile -t sports < <("$OUT/benchtool" ports 3)
	((${#sports[@]} == 3)) || { log "sidecar phase: no free ports"; return 0; }
	local -A ports=([dnsdist]=${sports[0]} [dnsedge]=${sports[1]}) pids=()
	plain_conf "$RUN/sidecar-dnsedge.yaml" "${ports[dnsedge]}" "${sports[2]}"
	render dnsdist.conf.in "$RUN/sidecar-dnsdist.conf" PORT="${ports[dnsdist]}" UPSTREAM_PORT="$NAMED_PORT" \
		CACHE_ENTRIES="$MAIN_CACHE_ENTRIES" CACHE_OPTIONS=""
	start sidecar-dnsdist "$SERVER_CORE" dnsdist --supervised --disable-syslog -C "$RUN/sidecar-dnsdist.conf"
	pids[dnsdist]=$STARTED_PID
	start sidecar-dnsedge "$SERVER_CORE" "$OUT/dnsedge" serve -config "$RUN/sidecar-dnsedge.yaml"
	pids[dnsedge]=$STARTED_PID
	local ok=1
	for side in dnsdist dnsedge; do
		if ! wait_ready "${ports[$side]}" "${pids[$side]}"; then
			log "sidecar phase: $side did not start, see bench/out/run/sidecar-$side.log"
			printf '%s\t0\t%s\tfailed to start\t-\t-\n' "${SIDECAR_SCENARIOS%% *}" "$side" >>"$RUN/sidecar-pairs.tsv"
			ok=0
			break
		fi
		mkdir -p "$RUN/sidecar-$side"
		timeout 60 taskset -c "$LOAD_CORE" nice -n "$NICE" dnsperf -s 127.0.0.1 -p "${ports[$side]}" -d "$RUN/hot.txt" -n 1 -c 1 -q 10 -t 2 \
			>"$RUN/sidecar-$side/warm.txt" 2>&1 || true
	done
	if ((ok)); then
		pair_rounds "$RUN/sidecar-pairs.tsv" dnsdist dnsedge $SIDECAR_SCENARIOS
	fi
	for side in dnsdist dnsedge; do
		[[ -z ${pids[$side]:-} ]] || stop_pid "${pids[$side]}"
	done
}
