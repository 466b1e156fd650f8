#!/usr/bin/env python3
"""`trailwatch replay` with the default trail, written plainly with Python's standard library:
the replay benchmark's baseline (scripts/bench.sh, benches/pipeline.rs section "replay").

Reads gzip (or plain) CloudTrail log files with gzip + json, keeps management events (the
default trail: every management event), and writes each kept record as one JSON line to
OUT/<recipientAccountId>_CloudTrail_<awsRegion>.jsonl, as the replay writes its log group.

usage: scripts/bench_replay.py OUT FILE...   (or OUT @LIST, a file of paths one a line)
Prints one JSON line: records read, kept.
"""

import gzip
import json
import os
import sys


def is_management(r):
    category = r.get("eventCategory")
    if category:
        return category == "Management"
    if r.get("eventType") in ("AwsCloudTrailInsight", "AwsVpceEvent"):
        return False
    return r.get("managementEvent") is not False


def main(out, paths):
    os.makedirs(out, exist_ok=True)
    streams = {}
    records = kept = 0
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        for r in json.loads(data)["Records"]:
            records += 1
            if not is_management(r):
                continue
            kept += 1
            stream = "%s_CloudTrail_%s" % (r.get("recipientAccountId"), r.get("awsRegion"))
            if stream not in streams:
                streams[stream] = open(os.path.join(out, stream + ".jsonl"), "w", encoding="utf-8")
            streams[stream].write(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n")
    for f in streams.values():
        f.close()
    print(json.dumps({"records": records, "kept": kept}))


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 2 and args[1].startswith("@"):
        with open(args[1][1:]) as f:
            args = [args[0]] + [line.strip() for line in f if line.strip()]
    main(args[0], args[1:])
