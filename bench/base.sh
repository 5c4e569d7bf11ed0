# shellcheck shell=bash
# The cost of what changed since a git ref: dnsedge built from BENCH_BASE
# (a commit, tag or branch) against dnsedge built from the tree, on the
# same configuration (the main rows' one, without policy), in paired
# rounds like the policy phase. Rows to base.tsv in the columns of
# policy.tsv; sides "base" and "head". Sourced by bench/run.sh, which
# runs base_phase when BENCH_BASE is set.

BASE_SCENARIOS=${BENCH_BASE_SCENARIOS:-"hit-udp-max hit-tcp-max miss-udp-max hit-udp-5k miss-udp-5k"}

base_phase() {
	local src=$RUN/base-src side ref
	local -a bports=()
	rm -f "$RUN/base.tsv"
	if ! ref=$(git -C "$ROOT" rev-parse --short "$BENCH_BASE^{commit}" 2>/dev/null); then
		log "base phase: $BENCH_BASE is not a commit"
		printf 'base\t0\tbase\tBENCH_BASE is not a commit\t-\t-\n' >"$RUN/base.tsv"
		return 0
	fi
	printf '%s (%s)\n' "$BENCH_BASE" "$ref" >"$RUN/base-ref.txt"
	rm -rf "$src" && mkdir -p "$src"
	if ! git -C "$ROOT" archive "$ref" | tar -x -C "$src" 2>"$RUN/base-build.log" ||
		! (cd "$src" && go build -o "$OUT/dnsedge-base" ./cmd/dnsedge) >>"$RUN/base-build.log" 2>&1; then
		log "base phase: $BENCH_BASE does not build, see bench/out/run/base-build.log"
		printf 'base\t0\tbase\tdoes not build\t-\t-\n' >"$RUN/base.tsv"
		return 0
	fi
	mapfile -t bports < <("$OUT/benchtool" ports 4)
	((${#bports[@]} == 4)) || { log "base phase: no free ports"; return 0; }
	local -A ports=([base]=${bports[0]} [head]=${bports[1]}) stats=([base]=${bports[2]} [head]=${bports[3]}) pids=()
	for side in base head; do
		plain_conf "$RUN/dnsedge-base-$side.yaml" "${ports[$side]}" "${stats[$side]}"
	done
	if WARM=hot.txt PAIR_BIN_A=$OUT/dnsedge-base pair_servers base base head "$RUN/dnsedge-base-base.yaml" "$RUN/dnsedge-base-head.yaml"; then
		pair_rounds "$RUN/base.tsv" base head $BASE_SCENARIOS
	fi
	for side in base head; do
		[[ -z ${pids[$side]:-} ]] || stop_pid "${pids[$side]}"
	done
	rm -rf "$src"
}
