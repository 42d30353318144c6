#!/usr/bin/env bash
# inspectlab report: latency results of several machines or conditions in one comparison. Run from the repository
# root. Here the "machines" are this one under 1 and 2 threads; on real machines, copy each one's JSON files over.
set -euo pipefail
PATH="$(pwd)/.venv/bin:$PATH"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# One model timed under two conditions, saved as JSON (each file carries its device and conditions).
inspectlab latency lenet5 --threads 1 --warmup 2 --iters 50 --format json > "$out/lenet5-t1.json"
inspectlab latency lenet5 --threads 2 --warmup 2 --iters 50 --format json > "$out/lenet5-t2.json"
# A comparison timed under the first condition: it joins that column group and brings params and MACs.
inspectlab compare mobilenet_v3_small resnet18 --input 1,3,64,64 --latency --threads 1 --warmup 1 --iters 10 \
  -o "$out/compare-t1.json"

# One table, one column group per condition, on the terminal...
inspectlab report "$out"/lenet5-t1.json "$out"/lenet5-t2.json "$out"/compare-t1.json

# ... and as files: a self-contained HTML page, Markdown with its PNG plot beside it, one CSV line per measurement.
inspectlab report "$out"/*.json -o "$out/merged.html" -o "$out/merged.md" -o "$out/merged.csv" --title "1 vs 2 threads"
head -3 "$out/merged.csv"
ls "$out"
