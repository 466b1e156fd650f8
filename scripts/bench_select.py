#!/usr/bin/env python3
"""The select stage written plainly with Python's standard library: the benchmark's baseline.

Reads gzip CloudTrail log files with gzip + json, applies the trail configuration of
events/trail-config.json (management events except KMS; S3 object writes to the audit bucket),
drops repeated eventIDs, names the stream `<recipientAccountId>_CloudTrail_<awsRegion>` and
packs the kept records, re-serialised, into messages of at most 256 KiB per stream.

usage: scripts/bench_select.py FILE...   (or @LIST, a file of paths one a line)
Prints one JSON line: records read, kept, uncompressed bytes, messages.
"""

import gzip
import json
import sys

MAX_MESSAGE_BYTES = 262_144


def category(r):
    if r.get("eventCategory"):
        return r["eventCategory"]
    if r.get("eventType") == "AwsCloudTrailInsight":
        return "Insight"
    if r.get("eventType") == "AwsVpceEvent":
        return "NetworkActivity"
    if r.get("managementEvent") is False:
        return "Data"
    return "Management"


def selected(r):
    cat = category(r)
    if cat == "Management":
        return r.get("eventSource") != "kms.amazonaws.com"
    if cat == "Data":
        resources = [x for x in (r.get("resources") or []) if isinstance(x, dict)]
        return (any(x.get("type") == "AWS::S3::Object" for x in resources)
                and r.get("readOnly") is False
                and any(str(x.get("ARN", "")).startswith("arn:aws:s3:::audit-bucket/")
                        for x in resources))
    return False


def send(body):
    """Where the SQS send would go."""
    return len(body)


def main(paths):
    records = kept = uncompressed = messages = 0
    seen = set()
    packers = {}
    for path in paths:
        with gzip.open(path, "rb") as f:
            data = f.read()
        uncompressed += len(data)
        for r in json.loads(data)["Records"]:
            records += 1
            if not selected(r):
                continue
            if r.get("eventID") in seen:
                continue
            seen.add(r.get("eventID"))
            stream = "%s_CloudTrail_%s" % (r.get("recipientAccountId"), r.get("awsRegion"))
            text = json.dumps(r, separators=(",", ":"))
            body, size = packers.get(stream, ([], 0))
            if body and size + len(text) + 1 > MAX_MESSAGE_BYTES - 64:
                messages += 1
                send('{"v":1,"stream":%s,"records":[%s]}' % (json.dumps(stream), ",".join(body)))
                body, size = [], 0
            body.append(text)
            packers[stream] = (body, size + len(text) + 1)
            kept += 1
    for stream, (body, _) in packers.items():
        messages += 1
        send('{"v":1,"stream":%s,"records":[%s]}' % (json.dumps(stream), ",".join(body)))
    print(json.dumps({"records": records, "kept": kept, "uncompressed": uncompressed,
                      "messages": messages}))


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 1 and args[0].startswith("@"):
        with open(args[0][1:]) as f:
            args = [line.strip() for line in f if line.strip()]
    main(args)
