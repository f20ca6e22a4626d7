#!/bin/sh
# Times `patchmesh sim run` on the bundled scenarios: wall time, CPU time and peak
# resident memory, from GNU time (`/usr/bin/time -v`). Not part of CI.
#
#   crates/sim/bench.sh              # canaccord-26 (all, then each strategy), hub-and-spoke-12, geant-2012
#   crates/sim/bench.sh scale-10k    # also simulations/scale-10k.toml, mesh only (about 9 min of CPU)
#
# Build first: cargo build --release -p patchmesh --bin patchmesh
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${PATCHMESH:-$root/target/release/patchmesh}
out=${BENCH_OUT:-$(mktemp -d)}

if [ ! -x "$bin" ]; then
    echo "no executable at $bin: build it with cargo build --release -p patchmesh --bin patchmesh" >&2
    exit 1
fi

# run LABEL SCENARIO [ARGS...] times one run and writes its JSON report to $out/LABEL.json.
run() {
    label=$1
    scenario=$2
    shift 2
    /usr/bin/time -v -o "$out/$label.time" "$bin" sim run "$root/simulations/$scenario.toml" -q \
        --json "$out/$label.json" "$@" 2>/dev/null
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out/$label.time")
    user=$(sed -n 's/.*User time (seconds): //p' "$out/$label.time")
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out/$label.time")
    printf '%-28s wall %10s  user %8s s  peak RSS %8s KiB\n' "$label" "$wall" "$user" "$rss"
}

run canaccord-26 canaccord-26
for strategy in mesh central office-cache; do
    run "canaccord-26-$strategy" canaccord-26 --strategy "$strategy"
done
run hub-and-spoke-12 hub-and-spoke-12
run geant-2012 geant-2012
if [ "${1:-}" = scale-10k ]; then
    run scale-10k-mesh scale-10k --strategy mesh
fi
echo "reports and timings in $out"
