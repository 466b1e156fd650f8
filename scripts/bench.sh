#!/usr/bin/env bash
# The benchmark suite of issue 6, in one command:
#
#   scripts/bench.sh            # everything
#   scripts/bench.sh select     # only the sections of benches/pipeline.rs whose name contains it
#                               # (select, deliver, memory, cold)
#
# Builds the three functions and the CLI in release mode, generates the corpus (scripts/gen-corpus.py,
# ~1.1 GB of CloudTrail JSON as 170 MB of gzip under target/bench-corpus, skipped when already
# there), runs benches/pipeline.rs, which prints one table of ratios measured in the same run,
# then the selector, Insights, detection and hostile-input (peak memory) benches. The table is
# also written to
# target/bench-out/pipeline.md. TRAILWATCH_BENCH_ROUNDS (default 3) sets the repetitions.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/bench-out

if ! command -v jq >/dev/null; then
    echo "installing jq (the jq baseline)…" >&2
    apt-get install -y jq >/dev/null || { apt-get update >/dev/null && apt-get install -y jq >/dev/null; }
fi

python3 scripts/gen-corpus.py

echo "building the functions (release)…" >&2
if ! cargo build --release --quiet -p trailwatch-select-fn -p trailwatch-deliver-fn -p trailwatch-insights-fn -p trailwatch-cli; then
    echo "warning: a function did not build; its size and cold start are missing from the table" >&2
fi
cargo bench --quiet -p trailwatch --bench pipeline --no-run

# What else is running: the figures are CPU time per core, but a busy machine still shares caches.
{
    echo "### what else was running at the start (top CPU users)"
    echo '```'
    uptime
    ps -eo pcpu,etime,comm --sort=-pcpu | head -8
    echo '```'
} | tee target/bench-out/machine.md

cargo bench --quiet -p trailwatch --bench pipeline -- "$@" | tee target/bench-out/pipeline.md

if [ $# -eq 0 ]; then
    for bench in selectors insights detect hostile; do
        if [ -f "benches/$bench.rs" ]; then
            echo
            echo "### $bench (benches/$bench.rs)"
            echo '```'
            cargo bench --quiet -p trailwatch --bench "$bench" 2>&1 | tee "target/bench-out/$bench.txt"
            echo '```'
        else
            echo
            echo "### $bench: benches/$bench.rs not present yet"
        fi
    done
fi
