#!/usr/bin/env python3
"""Draw benchmark lines `RESULT <workload> <system> <metric>=<value>` (stdin) as a PNG with gnuplot:
for every figure two or more systems reported, each system's value relative to the fastest of them
(1 = the fastest; 0.1 = ten times slower), on a log scale.

    scripts/bench-chart.py OUTPUT.png [--title TEXT] < results
    scripts/bench-chart.py --self-test     (ctest bench_chart: known figures, checked ratios)

"Fastest" is the highest value for a rate (`*_per_s`) and the lowest for a cost (`us_*`, `*_ms`,
`bytes_*`: less memory counts as faster). `lost` is not a speed and is not drawn; nor are the
ceilings `limit`, `sqlite` and `redis` (hand-written loops with no runtime, not peers) or Stage's
variant metrics that no peer reports. A system that reported no number for a figure (W7: a peer
without redelivery reports lost messages instead of a rate) has no bar there. The data and the
gnuplot script are written next to OUTPUT (OUTPUT.dat, OUTPUT.gp) so that the figure can be
checked and redrawn. Used by `scripts/stage bench --peers --chart FILE`. Stdlib and gnuplot only.
"""
import math
import pathlib
import re
import subprocess
import sys

LINE = re.compile(r"^RESULT\s+(\S+)\s+(\S+)\s+([^=\s]+)=(\S*)\s*$")
ORDER = ["stage", "tokio", "erlang", "caf", "qt"]  # others follow by name
CEILINGS = {"limit", "sqlite", "redis"}
NO_CHART = {"lost"}
COLORS = {"stage": "#2e7d32", "tokio": "#c46f2a", "erlang": "#a03a8c", "caf": "#3f83c4", "qt": "#7c8594"}
# Stage's variant metrics, each drawn beside the peers' figure it compares with (WORKLOADS.md):
# (workload, Stage's metric) -> (label, the metric the peers report, the peers compared).
PAIRS = {
    ("W2", "msgs_per_s_signal"): ("W2 signal to mailbox", "msgs_per_s", ["qt"]),
    ("W3", "us_per_roundtrip_actor"): ("W3 actor ask", "us_per_roundtrip", ["tokio", "erlang", "caf"]),
    ("W3", "us_per_roundtrip_future"): ("W3 slot code, same thread", "us_per_roundtrip_samethread", ["qt"]),
    ("W3", "us_per_roundtrip_future_crossthread"): ("W3 slot code, cross-thread", "us_per_roundtrip", ["qt"]),
}
LABELS = {"stage": "Stage", "qt": "plain Qt", "erlang": "Erlang/OTP", "caf": "CAF", "tokio": "tokio"}
SHORT = {"msgs_per_s": "msgs/s", "us_per_roundtrip": "round trip", "spawn_us_per_worker": "spawn",
         "bytes_per_worker": "bytes/worker", "shutdown_ms": "shutdown", "restarts_per_s": "restarts/s",
         "us_per_cycle": "one-for-all", "restart_ms": "restart"}


def number(text):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def higher_is_better(metric):
    return metric.endswith("_per_s") or "_per_s_" in metric


def workload_key(name):
    m = re.match(r"^([A-Za-z]*)(\d+)(.*)$", name)
    return (m.group(1), int(m.group(2)), m.group(3)) if m else (name, 0, "")


SELF_TEST_INPUT = """\
RESULT W1 stage msgs_per_s=20000000
RESULT W1 tokio msgs_per_s=5000000
RESULT W1 qt msgs_per_s=200000
RESULT W1 limit msgs_per_s=90000000
RESULT W2 stage msgs_per_s_signal=4800000
RESULT W3 stage us_per_roundtrip_actor=1
RESULT W3 stage us_per_roundtrip=0.5
RESULT W3 tokio us_per_roundtrip=0.25
RESULT W3 erlang us_per_roundtrip=2
RESULT W7 stage msgs_per_s=10000000
RESULT W7 stage lost=0
RESULT W7 tokio msgs_per_s=40000000
RESULT W7 tokio lost=200
RESULT W7 erlang msgs_per_s=not-a-number
RESULT W7 caf msgs_per_s=5000000
RESULT W7 caf lost=0
noise that is not a RESULT line
"""
# figure -> {system: relative value}: what the input above must give.
SELF_TEST_EXPECTED = {
    "W1 msgs/s": {"stage": 1.0, "tokio": 0.25, "qt": 0.01},  # limit is a ceiling: not drawn
    "W3 round trip": {"stage": 0.5, "tokio": 1.0, "erlang": 0.125},  # a cost: the lowest is fastest
    "W3 actor ask": {"stage": 0.25, "tokio": 1.0, "erlang": 0.125},  # paired with the peers' W3
    "W7 msgs/s *": {"stage": 1.0, "caf": 0.5},  # a system that lost messages: no bar
}  # W2: Stage only (no qt figure to pair with); lost itself is not drawn


def self_test():
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        png = pathlib.Path(tmp) / "chart.png"
        done = subprocess.run([sys.executable, __file__, str(png)], input=SELF_TEST_INPUT, text=True,
                              capture_output=True)
        if done.returncode != 0:
            print(f"self-test FAILED: exit {done.returncode}: {done.stderr}")
            return 1
        header, *lines = (png.parent / "chart.png.dat").read_text().splitlines()
        systems = header.split()[2:]
        got = {}
        for line in lines:
            label, cells = line.rsplit('"', 1)[0].strip('"'), line.rsplit('"', 1)[1].split()
            got[label] = {s: float(c) for s, c in zip(systems, cells) if c != "?"}
        ok = set(got) == set(SELF_TEST_EXPECTED) and all(
            set(got[k]) == set(v) and all(abs(got[k][s] - v[s]) < 1e-9 for s in v) for k, v in SELF_TEST_EXPECTED.items())
        magic = png.read_bytes()[:8] if png.exists() else b""
        if not ok or magic != b"\x89PNG\r\n\x1a\n":
            print(f"self-test FAILED: figures {got}, expected {SELF_TEST_EXPECTED}; PNG header {magic!r}")
            return 1
    print(f"self-test passed: {len(SELF_TEST_EXPECTED)} figures with the expected ratios, and a PNG")
    return 0


def main():
    args = sys.argv[1:]
    if args == ["--self-test"]:
        return self_test()
    if not args or args[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    output = pathlib.Path(args[0])
    title = "Stage and its peers: each figure relative to the fastest system (1 = fastest; higher is better)"
    if len(args) >= 3 and args[1] == "--title":
        title = args[2]

    values, order, lost = {}, {}, {}
    for line in sys.stdin:
        m = LINE.match(line.strip())
        if not m:
            continue
        workload, system, metric, value = m.groups()
        if metric == "lost":
            try:
                if float(value) > 0:
                    lost.setdefault(workload, {})[system] = value
            except ValueError:
                pass
        if system in CEILINGS or metric in NO_CHART:
            continue
        v = number(value)
        if v is None:
            continue
        key = (workload, metric)
        order.setdefault(key, len(order))
        values.setdefault(key, {})[system] = v

    # A system that lost messages failed the workload (W7 is at-least-once): its rate is not drawn,
    # and the figure's label says who lost how many.
    lost_note = {}
    for workload, systems_lost in lost.items():
        for key in [k for k in values if k[0] == workload]:
            for system in systems_lost:
                values[key].pop(system, None)
        lost_note[workload] = ", ".join(f"{LABELS.get(s, s)} lost {n}" for s, n in sorted(systems_lost.items()))

    # The paired figures: Stage's variant beside the peers' figure it compares with.
    labels = {}
    for (workload, metric), (label, peer_metric, peers) in PAIRS.items():
        mine = values.get((workload, metric), {}).get("stage")
        theirs = {p: values.get((workload, peer_metric), {}).get(p) for p in peers}
        theirs = {p: v for p, v in theirs.items() if v is not None}
        if mine is None or not theirs:
            continue
        key = (workload, metric)
        values[key] = {"stage": mine, **theirs}
        labels[key] = label
        order[key] = order.get((workload, peer_metric), order[key]) + 0.5

    figures = [k for k in values if len(values[k]) >= 2]
    figures.sort(key=lambda k: (workload_key(k[0]), order[k]))
    if not figures:
        print("bench-chart: no figure reported by two or more systems", file=sys.stderr)
        return 1
    systems = sorted({s for k in figures for s in values[k]},
                     key=lambda s: (ORDER.index(s) if s in ORDER else len(ORDER), s))

    rows = []
    lowest = 1.0
    for key in figures:
        got = values[key]
        best = max(got.values()) if higher_is_better(key[1]) else min(got.values())
        rel = {}
        for s, v in got.items():
            rel[s] = v / best if higher_is_better(key[1]) else best / v
            lowest = min(lowest, rel[s])
        label = labels.get(key, f"{key[0]} {SHORT.get(key[1], key[1])}")
        if key[0] in lost_note:
            label += " *"
        rows.append((label, rel))

    data = output.with_suffix(output.suffix + ".dat")
    script = output.with_suffix(output.suffix + ".gp")
    with data.open("w") as f:
        f.write("# figure " + " ".join(systems) + "\n")
        for label, rel in rows:
            cells = [f"{rel[s]:.6g}" if s in rel else "?" for s in systems]
            f.write(f'"{label}" ' + " ".join(cells) + "\n")

    bottom = 10 ** math.floor(math.log10(lowest * 0.8))
    width = max(900, 120 * len(rows) + 200)
    plots = []
    for i, s in enumerate(systems):
        color = COLORS.get(s, "#444444")
        label = LABELS.get(s, s)
        xtic = ":xtic(1)" if i == 0 else ""
        plots.append(f"'{data.name}' using (${i + 2} > 0 ? ${i + 2} : 1/0){xtic} title '{label}' lc rgb '{color}'")
    footnote = ""
    if lost_note:
        text = "; ".join(f"{w}: {note}" for w, note in sorted(lost_note.items()))
        footnote = f"set label '* messages lost, so no bar (at-least-once failed): {text}' at screen 0.01, screen 0.03"
    gp = f"""# Generated by scripts/bench-chart.py from {data.name}.
set terminal pngcairo size {width},520 font 'DejaVu Sans,11' noenhanced
set output '{output.name}'
set datafile missing '?'
set title '{title}'
set style data histograms
set style histogram clustered gap 1.5
set style fill solid 0.9 border -1
set boxwidth 0.9
set logscale y 10
set yrange [{bottom:g}:1.6]
set ytics ('1' 1, '0.5' 0.5, '0.2' 0.2, '0.1' 0.1, '0.05' 0.05, '0.02' 0.02, '0.01' 0.01, '0.005' 0.005, '0.002' 0.002, '0.001' 0.001, '0.0001' 0.0001)
set ylabel 'value relative to the fastest (log scale)'
set grid ytics lc rgb '#dddddd'
set xtics nomirror rotate by -30 left
set key outside right top vertical
set border 3
set lmargin 10
set bmargin 8
{footnote}
plot {", ".join(plots)}
"""
    script.write_text(gp)
    done = subprocess.run(["gnuplot", script.name], cwd=script.parent)
    if done.returncode != 0:
        print("bench-chart: gnuplot failed", file=sys.stderr)
        return 1
    print(f"bench-chart: {output} ({len(rows)} figures, {len(systems)} systems; data in {data.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
