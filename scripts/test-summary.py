#!/usr/bin/env python3
"""One build's test run in a few lines, for a reader of a CI log.

Usage: test-summary.py BUILD_DIR LABEL

Reads BUILD_DIR/meson-logs/testlog.json (written by `meson test`) and prints
the skipped tests grouped by the reason they gave (their "SKIP: ..." line),
the failed ones by name, then one closing line:

    LABEL: N passed, N failed, N skipped

Exits 1 when a test failed or timed out, or when the log is missing.
"""
import collections
import json
import sys


def skip_reason(test):
    for stream in ("stdout", "stderr"):
        for line in (test.get(stream) or "").splitlines():
            if line.startswith("SKIP: "):
                return line[len("SKIP: "):].strip()
    return "no reason given"


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    build, label = sys.argv[1], sys.argv[2]
    try:
        with open(f"{build}/meson-logs/testlog.json", encoding="utf-8") as f:
            tests = [json.loads(line) for line in f if line.strip()]
    except OSError as e:
        print(f"{label}: no test log: {e}")
        return 1
    passed = [t for t in tests if t["result"] in ("OK", "EXPECTEDFAIL")]
    skipped = [t for t in tests if t["result"] == "SKIP"]
    failed = [t for t in tests if t not in passed and t not in skipped]

    reasons = collections.Counter(skip_reason(t) for t in skipped)
    for reason, n in reasons.most_common():
        print(f"{label}: {n} skipped: {reason}")
    for t in failed:
        print(f"{label}: {t['result']}: {t['name']}")
    print(f"{label}: {len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped")
    return 1 if failed or not tests else 0


if __name__ == "__main__":
    sys.exit(main())
