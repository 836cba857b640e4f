#!/usr/bin/env python3
"""Read benchmark lines `RESULT <workload> <system> <metric>=<value>` on stdin and print a Markdown
table: workload | metric | stage | <each peer that reported anything> | stage/<peer> ratios.

Ratio = stage value / peer value, 2 decimals; blank when a side is missing, is not a number, or the
peer value is 0, and always blank for the `lost` metric (a count of lost messages, not a rate).
Other lines are ignored; the last figure wins when one is reported twice. Stdlib only.
"""
import math
import re
import sys

LINE = re.compile(r"^RESULT\s+(\S+)\s+(\S+)\s+([^=\s]+)=(\S*)\s*$")
PEER_ORDER = ["erlang", "tokio", "caf", "qt", "limit"]  # WORKLOADS.md order; others follow by name
NO_RATIO = {"lost"}


def number(text):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def workload_key(name):
    """W1 < W2 < W10 < R0 < anything else, by first letter group then number."""
    m = re.match(r"^([A-Za-z]*)(\d+)(.*)$", name)
    group = {"W": 0, "R": 1}.get(m.group(1) if m else "", 2)
    return (group, m.group(1) if m else name, int(m.group(2)) if m else 0, m.group(3) if m else "")


def main():
    values = {}  # (workload, metric) -> {system: value text}
    metric_order = {}  # (workload, metric) -> first appearance index
    systems = set()
    for line in sys.stdin:
        m = LINE.match(line.strip())
        if not m:
            continue
        workload, system, metric, value = m.groups()
        key = (workload, metric)
        metric_order.setdefault(key, len(metric_order))
        values.setdefault(key, {})[system] = value
        systems.add(system)

    if not values:
        print("results-table: no RESULT lines on stdin", file=sys.stderr)
        return 1

    peers = [p for p in PEER_ORDER if p in systems]
    peers += sorted(systems - set(PEER_ORDER) - {"stage"})

    header = ["workload", "metric", "stage"] + peers + ["stage/" + p for p in peers]
    rows = []
    for key in sorted(values, key=lambda k: (workload_key(k[0]), metric_order[k])):
        workload, metric = key
        got = values[key]
        row = [workload, metric, got.get("stage", "")] + [got.get(p, "") for p in peers]
        for p in peers:
            s, v = number(got.get("stage", "")), number(got.get(p, ""))
            ok = metric not in NO_RATIO and s is not None and v not in (None, 0.0)
            row.append(f"{s / v:.2f}" if ok else "")
        rows.append(row)

    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
