#!/usr/bin/env bash
# Where the select path's time goes: perf samples benches/pipeline.rs running select_files (gunzip,
# split into records, parse, select, pack into delivery messages) over the whole benchmark corpus,
# and nothing else; the report groups the samples by stage, then lists the hottest functions.
#
#   scripts/profile.sh          # writes target/bench-out/profile.txt
#
# The bench is built with symbols (not stripped) in target/profile, so it does not disturb the
# release build in target/. Needs perf (linux-perf) and kernel.perf_event_paranoid ≤ 2.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 1; }
mkdir -p target/bench-out
python3 scripts/gen-corpus.py

export CARGO_TARGET_DIR=target/profile CARGO_PROFILE_BENCH_STRIP=false \
    CARGO_PROFILE_BENCH_DEBUG=line-tables-only
bench=$(cargo bench --quiet -p trailwatch --bench pipeline --no-run --message-format=json \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("executable") and m["target"]["name"] == "pipeline":
        print(m["executable"])')

data=target/bench-out/perf.data
TRAILWATCH_BENCH_ROUNDS="${TRAILWATCH_BENCH_ROUNDS:-3}" \
    perf record --quiet -F 1999 -o "$data" "$bench" profile
perf report -i "$data" --no-children --sort symbol --stdio --percent-limit 0 2>/dev/null \
    | python3 scripts/profile_stages.py | tee target/bench-out/profile.txt
