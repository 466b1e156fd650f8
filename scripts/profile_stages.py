"""Groups a flat `perf report --sort symbol --stdio` (on stdin) by stage of the select path.

Symbols are matched by the crate and module that appear in their names; with LTO, a function
inlined into another counts where it was inlined, so the stages are close, not exact.
"""
import re
import sys

STAGES = [
    ("gunzip (zlib-rs inflate, crc32)", r"zlib_rs|inflate|crc32|adler"),
    ("split into records (ingest::log_file)", r"trailwatch::ingest"),
    ("parse fields (Record::parse, serde_json)", r"trailwatch::record|serde_json|serde::de"),
    ("select (compiled selectors)", r"trailwatch::select"),
    ("pack messages (deliver::message, dedupe)", r"trailwatch::deliver|hashbrown|siphash|Hash"),
    ("memcpy / memmove / memchr", r"memcpy|memmove|memchr|memrchr|memcmp|memset"),
    ("allocation", r"malloc|free|realloc|alloc::|cfree"),
    ("kernel", r"\[k\]"),
]

rows = []
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+)%\s+(.*)$", line)
    if m:
        # perf appends empty source-line columns ("-  -") when the binary has line tables.
        symbol = re.sub(r"(\s+-)+\s*$", "", m.group(2))
        rows.append((float(m.group(1)), symbol.strip()))

totals = {name: 0.0 for name, _ in STAGES}
other = 0.0
for share, symbol in rows:
    for name, pattern in STAGES:
        if re.search(pattern, symbol):
            totals[name] += share
            break
    else:
        other += share

print("select path, share of CPU samples by stage")
for name, _ in STAGES:
    print(f"  {totals[name]:5.1f}%  {name}")
print(f"  {other:5.1f}%  other")
print()
print("hottest functions")
for share, symbol in rows[:25]:
    print(f"  {share:5.1f}%  {symbol[:150]}")
