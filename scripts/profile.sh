#!/usr/bin/env bash
# Profiles one phase of ordo-bench: `perf record -a -g` over the whole
# machine while the phase runs, then CPU by process, the hottest symbols of
# each of the heaviest processes, and a flamegraph.
#
#   scripts/profile.sh                    # the life cycle at the latency rate
#   scripts/profile.sh "write path"       # PlaceOrder with the order service alone
#   scripts/profile.sh "life cycle:"      # 16 clients back to back, whole pipeline
#
# The phase is matched against ordo-bench's progress lines. Results land in
# .ordo/profile/: perf.data, report.txt, flamegraph.svg. Needs perf (Debian:
# linux-perf); inferno (the flamegraph) is installed on first use.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

phase="${1:-life cycle at}"
seconds="${PROFILE_SECONDS:-7}"
out="$ORDO_STATE_DIR/profile"
bench="$CARGO_TARGET_DIR/release/ordo-bench"
inferno="$ORDO_TOOLS_DIR/inferno/bin"

command -v perf >/dev/null || die "perf is missing (Debian: apt-get install linux-perf)"
[ -x "$bench" ] || die "no $bench: run just bench once (it builds the release binaries)"
if [ ! -x "$inferno/inferno-flamegraph" ]; then
  say "installing inferno (flamegraphs) into $ORDO_TOOLS_DIR/inferno"
  cargo install inferno --root "$ORDO_TOOLS_DIR/inferno" --locked --quiet
fi
mkdir -p "$out"

say "ordo-bench, profiling the phase \"$phase\" for ${seconds}s"
"$bench" --backlog 2000 --seconds 30 >"$out/bench.txt" 2>"$out/bench.err" &
bench_pid=$!
trap 'kill $bench_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 1200); do
  grep -q -- "$phase" "$out/bench.err" 2>/dev/null && break
  kill -0 $bench_pid 2>/dev/null || die "ordo-bench ended before \"$phase\" (see $out/bench.err)"
  sleep 0.25
done
grep -q -- "$phase" "$out/bench.err" || die "no phase \"$phase\" within 5 minutes"
sleep 2
perf record -a -g -F 299 -o "$out/perf.data" -- sleep "$seconds" >/dev/null 2>&1
wait $bench_pid
trap - EXIT

# The report reads only the head of perf's output: a closed pipe is fine.
set +o pipefail
{
  echo "phase: $phase (${seconds}s, whole machine)"
  echo
  echo "CPU by process:"
  perf report -i "$out/perf.data" --no-children --sort comm -g none --stdio 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -12
  echo
  echo "CPU by process and binary:"
  perf report -i "$out/perf.data" --no-children --sort comm,dso -g none --stdio 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -16
  for comm in postgres tokio-rt-worker outbox-relay-io; do
    echo
    echo "hottest symbols in $comm:"
    perf report -i "$out/perf.data" --no-children --comm "$comm" --sort sym -g none --stdio 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | head -15
  done
} >"$out/report.txt"
set -o pipefail
perf script -i "$out/perf.data" 2>/dev/null \
  | "$inferno/inferno-collapse-perf" \
  | "$inferno/inferno-flamegraph" --title "ordo-bench: $phase" >"$out/flamegraph.svg"
cat "$out/report.txt"
echo
grep -A40 '^figure' "$out/bench.txt" || true
say "report: $out/report.txt · flamegraph: $out/flamegraph.svg"
