#!/usr/bin/env bash
# Measures a time-windowed upload cap on a real origin daemon over 127.0.0.1.
#
# The origin's upload cap is BASE outside a one-minute window and WINDOW_RATE inside it.
# One office node fetches a patch sized to span the time before the window, the window
# and about 25 s after it. The office's payload rate is sampled once a second from
# `patchmesh status`, and the mean rate inside and after the window is printed.
#
# Usage: benches/cap_window.sh [PATCHMESH_BINARY]   (default: target/release/patchmesh)
set -euo pipefail

binary=$(realpath "${1:-target/release/patchmesh}")
base_mbit=32
window_mbit=8
work=$(mktemp -d /tmp/patchmesh-cap-window.XXXXXX)
cd "$work"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

"$binary" keygen --out origin.key >origin.out
"$binary" keygen --out office.key >/dev/null
"$binary" keygen --out publisher.key >/dev/null
origin_peer=$(awk '/peer id/ {print $NF}' origin.out)
cat >trust.toml <<EOF
format = 1

[[publisher]]
name = "publisher"
key = "$(cut -d' ' -f1 publisher.key.pub)"
EOF

# The window opens at the next minute boundary at least 25 s away and lasts a minute.
now=$(date +%s)
to_window=$((60 - now % 60))
if [ "$to_window" -lt 25 ]; then to_window=$((to_window + 60)); fi
window_start=$((now + to_window))
from=$(date -u -d "@$window_start" +%H:%M)
to=$(date -u -d "@$((window_start + 60))" +%H:%M)

cat >origin.toml <<EOF
site = "hq"
data_dir = "origin-data"
identity_key = "origin.key"
trust_file = "trust.toml"
listen = ["/ip4/127.0.0.1/tcp/17401"]
origin = true

[caps.upload]
rate = "${base_mbit}Mbit/s"
window = [{ from = "$from", to = "$to", rate = "${window_mbit}Mbit/s" }]
EOF
cat >office.toml <<EOF
site = "branch-1"
data_dir = "office-data"
identity_key = "office.key"
trust_file = "trust.toml"
listen = ["/ip4/127.0.0.1/tcp/17402"]
bootstrap = ["/ip4/127.0.0.1/tcp/17401/p2p/$origin_peer"]
EOF

# Bytes: base rate until the window, the window rate for 60 s, then 25 s at the base rate.
base_bytes_per_s=$((base_mbit * 125000))
window_bytes_per_s=$((window_mbit * 125000))
size=$((base_bytes_per_s * (to_window + 5) + window_bytes_per_s * 60 + base_bytes_per_s * 25))
head -c "$size" /dev/urandom >patch.bin

"$binary" node --config origin.toml 2>origin.log &
"$binary" node --config office.toml 2>office.log &
sleep 3
"$binary" publish patch.bin --key publisher.key --id cap-window --chunk-size 262144 \
    --submit --socket origin-data/control.sock >/dev/null
echo "window $from-$to UTC; patch $size bytes; work dir $work" >&2

while true; do
    line=$("$binary" status --socket office-data/control.sock --json | python3 -c '
import json, sys
patches = json.load(sys.stdin)["node"]["patches"]
print(patches[0]["stats"]["bytes_from_origin"], patches[0]["state"]) if patches else print(0, "none")')
    echo "$(date +%s.%N) $line" >>samples.txt
    case "$line" in *complete*) break ;; esac
    sleep 1
done

if ! cmp -s patch.bin office-data/patches/cap-window/*/files/patch.bin; then
    echo "the office's copy differs from the source" >&2
    exit 1
fi

python3 - "$window_start" <<'EOF'
import sys
window_start = int(sys.argv[1])
rows = [(float(t), int(b)) for t, b, _ in (line.split() for line in open("samples.txt"))]

def mean_rate(start, end):
    inside = [row for row in rows if start <= row[0] <= end]
    (t0, b0), (t1, b1) = inside[0], inside[-1]
    return (b1 - b0) / (t1 - t0) / 1e6

print(f"before the window: {mean_rate(rows[0][0] + 2, window_start):.2f} MB/s payload")
print(f"inside the window: {mean_rate(window_start + 1, window_start + 60):.2f} MB/s payload")
print(f"after the window:  {mean_rate(window_start + 61, window_start + 84):.2f} MB/s payload")
EOF
