#!/usr/bin/env bash
# Fuzzes every target in fuzz/ for SECONDS each (default 60), one after the other, niced and
# with an RSS limit, starting from the kept corpus (fuzz/corpus/<target>). New inputs go to
# fuzz/target/work-corpus/<target>, not the repository; a crash, hang or out-of-memory input
# is written to fuzz/artifacts/<target>/ and stops the run with exit 1.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   scripts/fuzz.sh --cmin [TARGET...]   # minimise the kept corpus with what the runs found
#
# Needs the nightly toolchain and cargo-fuzz (installed here if missing). The normal test suite
# replays the kept corpus on stable (cli/tests/fuzz_corpus.rs), so CI needs neither.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

cmin=false
if [[ ${1:-} == --cmin ]]; then
  cmin=true
  shift
fi
seconds=60
if [[ ${1:-} =~ ^[0-9]+$ ]]; then
  seconds=$1
  shift
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

# No sanitizer: the code is safe Rust, so ASan would mostly slow the search down; libFuzzer
# still catches panics, timeouts and memory over the limit.
fuzz=(cargo +nightly fuzz)
build=(-s none --release --debug-assertions)
"${fuzz[@]}" build "${build[@]}"

for target in "${targets[@]}"; do
  work=target/work-corpus/$target
  mkdir -p "$work" "corpus/$target"
  if $cmin; then
    # Everything found so far, minimised back into the kept corpus: the fewest inputs that
    # reach every edge (-use_counters=0: hit counts do not count, which keeps it small); the
    # inputs that once failed (regression-*) are kept as they are.
    merged=target/merged-corpus/$target
    rm -rf "$merged" && mkdir -p "$merged"
    "${fuzz[@]}" run "${build[@]}" "$target" "$merged" "corpus/$target" "$work" -- \
      -merge=1 -use_counters=0 -rss_limit_mb=512 -timeout=10
    find "corpus/$target" -name 'regression-*' -exec cp {} "$merged" \;
    rm -rf "corpus/$target" && mv "$merged" "corpus/$target"
    echo "fuzz: $target: $(ls "corpus/$target" | wc -l) inputs kept"
    continue
  fi
  echo "fuzz: $target for ${seconds}s"
  nice -n 10 "${fuzz[@]}" run "${build[@]}" "$target" "$work" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=512 -malloc_limit_mb=512 -timeout=10 \
    -print_final_stats=1
done
