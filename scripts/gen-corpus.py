#!/usr/bin/env python3
"""Generate the benchmark corpus: realistic gzip CloudTrail log files from real records.

Real records from ../shared/data (invictus-ir log files, stratus-red-team arrays, panther-tests
JSONL; records without a parseable ISO eventTime are skipped) are resampled into CloudTrail log
files laid out as CloudTrail writes them:

    AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/<account>_CloudTrail_<region>_YYYYMMDDTHHMMZ_<id>.json.gz

Every record gets a unique eventID and requestID, an eventTime inside its file's 5-minute
window, and the file's account and region; about 0.5% are repeated records (same eventID), as
real deliveries contain. File sizes follow real trails: most files hold a handful of records,
a few are large (up to ~50 MB compressed). Two more files are written for the memory test:
mem-large.json.gz (~50 MB compressed) and mem-small.json.gz (~1 MB compressed).

Deterministic (fixed seed, gzip mtime 0) and stdlib only. Nothing is regenerated when
target/bench-corpus/manifest.json records the same parameters.

usage: scripts/gen-corpus.py [--out target/bench-corpus] [--size-mb 1100] [--seed 6]
"""

import argparse
import datetime as dt
import glob
import gzip
import json
import os
import random
import re
import shutil
import sys

GENERATOR_VERSION = 3
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data")

ACCOUNTS = ["123456789012", "210987654321", "333344445555", "444455556666", "555566667777",
            "666677778888", "777788889999", "888899990000"]
REGIONS = ["us-east-1", "us-east-1", "us-east-1", "us-west-2", "eu-west-1", "eu-central-1",
           "ap-southeast-2", "ap-northeast-1"]
BASE_TIME = dt.datetime(2026, 11, 20, 0, 0, 0, tzinfo=dt.timezone.utc)
CORPUS_HOURS = 48
SLOTS = ("EID", "TIME", "ACCT", "REGION", "REQ")
SLOT_RE = re.compile(r"@@(EID|TIME|ACCT|REGION|REQ)@@")
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def parse_time(text):
    if not isinstance(text, str):
        return None
    t = text.strip().replace(" ", "T")
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    try:
        return dt.datetime.fromisoformat(t)
    except ValueError:
        return None


def load_pool():
    records = []
    for path in sorted(glob.glob(os.path.join(DATA, "invictus-ir", "*.json"))):
        with open(path, encoding="utf-8") as f:
            records.extend(json.load(f)["Records"])
    for path in sorted(glob.glob(os.path.join(DATA, "stratus-red-team", "*.json"))):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        records.extend(data if isinstance(data, list) else data.get("Records", []))
    with open(os.path.join(DATA, "panther-tests", "panther-test-events.jsonl"), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                # Panther adds p_* fields of its own; CloudTrail never writes them.
                records.append({k: v for k, v in json.loads(line).items() if not k.startswith("p_")})
    pool = []
    for r in records:
        if not isinstance(r, dict) or parse_time(r.get("eventTime")) is None:
            continue
        if r.get("eventType") == "AwsCloudTrailInsight":
            continue
        t = dict(r)
        t["eventID"] = "@@EID@@"
        t["eventTime"] = "@@TIME@@"
        t["recipientAccountId"] = "@@ACCT@@"
        t["awsRegion"] = "@@REGION@@"
        if "requestID" in t:
            t["requestID"] = "@@REQ@@"
        text = json.dumps(t, separators=(",", ":"), ensure_ascii=False)
        parts = SLOT_RE.split(text)
        # parts alternates literal, slot name, literal, ...
        pool.append((parts[0::2], parts[1::2]))
    return pool


def uuid(rng):
    h = "%032x" % rng.getrandbits(128)
    return "%s-%s-4%s-%s-%s" % (h[:8], h[8:12], h[13:16], h[16:20], h[20:32])


class FileWriter:
    """Writes one log file's records through gzip, tracking sizes."""

    def __init__(self, path):
        self.path = path
        self.raw = open(path, "wb")
        self.gz = gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, compresslevel=6, mtime=0)
        self.records = 0
        self.uncompressed = 0
        self.gz.write(b'{"Records":[')
        self.uncompressed += 12

    def add(self, text):
        data = (text if self.records == 0 else "," + text).encode("utf-8")
        self.gz.write(data)
        self.uncompressed += len(data)
        self.records += 1

    def compressed_so_far(self):
        return self.raw.tell()

    def close(self):
        self.gz.write(b"]}")
        self.uncompressed += 2
        self.gz.close()
        self.raw.close()
        return os.path.getsize(self.path)


class Generator:
    def __init__(self, seed, pool):
        self.rng = random.Random(seed)
        self.pool = pool
        self.previous = None

    def record(self, when, account, region):
        rng = self.rng
        if self.previous is not None and rng.random() < 0.005:
            return self.previous  # a duplicate delivery: same record, same eventID
        literals, slots = self.pool[rng.randrange(len(self.pool))]
        values = {
            "EID": uuid(rng),
            "TIME": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ACCT": account,
            "REGION": region,
            "REQ": uuid(rng),
        }
        out = [literals[0]]
        for slot, literal in zip(slots, literals[1:]):
            out.append(values[slot])
            out.append(literal)
        self.previous = "".join(out)
        return self.previous

    def file_records(self, writer, count, start, account, region, stop_at_compressed=None):
        times = sorted(self.rng.randrange(300) for _ in range(min(count, 100_000)))
        i = 0
        while i < count:
            when = start + dt.timedelta(seconds=times[i % len(times)])
            writer.add(self.record(when, account, region))
            i += 1
            if stop_at_compressed and i % 2000 == 0 and writer.compressed_so_far() >= stop_at_compressed:
                break

    def key(self, when, account, region):
        name = "%s_CloudTrail_%s_%sZ_%s.json.gz" % (
            account, region, when.strftime("%Y%m%dT%H%M"),
            "".join(self.rng.choice(ALNUM) for _ in range(16)))
        return os.path.join("AWSLogs", account, "CloudTrail", region,
                            when.strftime("%Y/%m/%d"), name)

    def records_per_file(self):
        # Real trails: a median of a handful of records per file, a long tail of large files.
        u = self.rng.random()
        if u < 0.70:
            return self.rng.randint(1, 10)
        if u < 0.92:
            return self.rng.randint(11, 300)
        if u < 0.99:
            return self.rng.randint(301, 5000)
        return self.rng.randint(20_000, 200_000)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "bench-corpus"))
    ap.add_argument("--size-mb", type=int, default=1100, help="uncompressed corpus size, MB")
    ap.add_argument("--subset-mb", type=int, default=40,
                    help="uncompressed size of the subset the Python and jq baselines read, MB")
    ap.add_argument("--seed", type=int, default=6)
    args = ap.parse_args()

    params = {"version": GENERATOR_VERSION, "size_mb": args.size_mb, "subset_mb": args.subset_mb,
              "seed": args.seed}
    manifest_path = os.path.join(args.out, "manifest.json")
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            old = json.load(f)
        if old.get("params") == params and all(
                os.path.exists(os.path.join(args.out, e["path"])) for e in old["files"]):
            print("corpus up to date: %s (%d files, %.0f MB uncompressed)" % (
                args.out, len(old["files"]), old["uncompressed_bytes"] / 1e6), file=sys.stderr)
            return
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)

    pool = load_pool()
    gen = Generator(args.seed, pool)
    target = args.size_mb * 1_000_000
    files = []
    total = 0
    while total < target:
        count = gen.records_per_file()
        account = gen.rng.choice(ACCOUNTS)
        region = gen.rng.choice(REGIONS)
        start = BASE_TIME + dt.timedelta(seconds=gen.rng.randrange(CORPUS_HOURS * 3600))
        start = start.replace(second=0, minute=start.minute - start.minute % 5)
        rel = gen.key(start, account, region)
        path = os.path.join(args.out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        w = FileWriter(path)
        gen.file_records(w, count, start, account, region)
        compressed = w.close()
        files.append({"path": rel, "records": w.records, "uncompressed": w.uncompressed,
                      "compressed": compressed})
        total += w.uncompressed

    # The baselines' subset: every k-th file in generation order, so it has the same mix.
    subset, sub_total = [], 0
    step = max(1, round(total / (args.subset_mb * 1_000_000)))
    for i, e in enumerate(files):
        if i % step == 0 and sub_total < args.subset_mb * 1_000_000:
            subset.append(e["path"])
            sub_total += e["uncompressed"]

    memory = {}
    for name, compressed_target in (("mem-large.json.gz", 50_000_000), ("mem-small.json.gz", 1_000_000)):
        w = FileWriter(os.path.join(args.out, name))
        gen.file_records(w, 10**9, BASE_TIME, ACCOUNTS[0], "us-east-1",
                         stop_at_compressed=compressed_target)
        memory[name] = {"path": name, "records": w.records, "uncompressed": w.uncompressed,
                        "compressed": w.close()}

    manifest = {
        "params": params,
        "pool_records": len(pool),
        "files": files,
        "uncompressed_bytes": total,
        "compressed_bytes": sum(e["compressed"] for e in files),
        "records": sum(e["records"] for e in files),
        "subset": subset,
        "memory": memory,
    }
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
    sizes = sorted(e["records"] for e in files)
    print("corpus: %d files, %d records, %.0f MB uncompressed, %.0f MB gzip (%.1fx); "
          "records per file median %d, max %d; memory files %s" % (
              len(files), manifest["records"], total / 1e6, manifest["compressed_bytes"] / 1e6,
              total / manifest["compressed_bytes"], sizes[len(sizes) // 2], sizes[-1],
              ", ".join("%s %.1f MB gzip" % (k, v["compressed"] / 1e6) for k, v in memory.items())),
          file=sys.stderr)


if __name__ == "__main__":
    main()
