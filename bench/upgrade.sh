# Upgrade time, sourced by run.sh once $OUT/dnsedge is built: dnsedge
# serves UDP and TCP from a local zone, and `dnsedge upgrade` is run
# BENCH_UPGRADE_ROUNDS times (default 5). Its wall time is the upgrade
# time: from the command to the new process serving (the command returns
# once the new process has taken the state and its listeners serve).
# Writes $RUN/upgrade.tsv: one "upgrade_ms<TAB>MEDIAN<TAB>ALL..." line,
# and $RUN/state.tsv (state_bench below). BENCH_UPGRADE=0 skips both.
#
# Needs: $OUT/dnsedge, $RUN, log and die from run.sh; kdig and python3.

upgrade_bench() {
	local rounds=${BENCH_UPGRADE_ROUNDS:-5}
	local dir port sock pid i t0 t1 out ms=() sorted
	dir=$(mktemp -d)
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	sock=$dir/ctl.sock
	cat >"$dir/dnsedge.yaml" <<EOT
listeners:
  - {proto: udp, address: "127.0.0.1:$port"}
  - {proto: tcp, address: "127.0.0.1:$port"}
zones:
  - {origin: upgrade.test., file: $dir/zone}
upstreams:
  - {name: none, url: "udp://127.0.0.1:9"}
upgrade: {control: "$sock", drain: 2s, watch: 2s}
log: {level: warn}
EOT
	printf '$ORIGIN upgrade.test.\n@ 300 IN SOA ns hostmaster 1 3600 600 86400 300\nwww 300 IN A 192.0.2.1\n' >"$dir/zone"
	XDG_STATE_HOME=$dir "$OUT/dnsedge" serve -config "$dir/dnsedge.yaml" >"$RUN/upgrade.log" 2>&1 &
	pid=$!
	for ((i = 0; i < 100; i++)); do
		kdig @127.0.0.1 -p "$port" +timeout=1 +retry=0 +short www.upgrade.test A 2>/dev/null | grep -q . && break
		sleep 0.1
	done
	for ((i = 0; i < rounds; i++)); do
		t0=$(date +%s%N)
		if ! out=$("$OUT/dnsedge" upgrade -control "$sock" -timeout 60s 2>&1); then
			kill "$pid" 2>/dev/null
			die "upgrade failed: $out"
		fi
		t1=$(date +%s%N)
		ms+=("$(((t1 - t0) / 1000000))")
		pid=${out##*new process }
		pid=${pid%% *}
		# The next round needs the watch window over: the old process exits.
		sleep 3
	done
	sorted=$(printf '%s\n' "${ms[@]}" | sort -n | tr '\n' ' ')
	printf 'upgrade_ms\t%s\t%s\n' "$(printf '%s\n' "${ms[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')" "$sorted" >"$RUN/upgrade.tsv"
	log "upgrade time (command to new process serving): ${sorted}ms"
	# The process serving now is the last upgrade's.
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	rm -rf "$dir"
}

# state_bench: the state an upgrade carries, at a million cache entries
# (edge's BenchmarkState1M, one run): its size, and the wall and CPU time
# to write it and to read it. Writes $RUN/state.tsv.
state_bench() {
	local line
	if ! line=$(cd "$ROOT" && go test -run '^$' -bench '^BenchmarkState1M$' -benchtime 1x ./edge/ 2>&1 | grep '^BenchmarkState1M'); then
		log "state benchmark failed; no state row"
		return 0
	fi
	awk '{ for (i = 2; i <= NF; i++) v[$i] = $(i - 1) }
		END { printf "1000000\t%s\t%s\t%s\t%s\t%s\n", v["bytes/state"], v["write-ms"], v["read-ms"], v["write-cpu-ms"], v["read-cpu-ms"] }' <<<"$line" >"$RUN/state.tsv"
	log "state at 1M entries: $line"
}

if [[ ${BENCH_UPGRADE:-1} != 0 ]]; then
	upgrade_bench
	state_bench
fi
