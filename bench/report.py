"""Read pytest-benchmark JSON and print, per group, each entry's median, throughput and speed-up.

    python bench/report.py RESULTS.json [--baseline torch-cpu] [--plots DIR]

pytest-benchmark itself has no baseline column, no custom units and no
per-group plots; this adds the three. The throughput is in samples/s for the
training groups, GFLOP/s for the op groups (from each benchmark's
``extra_info``); the speed-up is the baseline's median over the entry's median,
with the baseline named by ``--baseline`` (``numpy`` where a group lacks it).
With matplotlib installed, ``--plots DIR`` writes one PNG bar chart per group.
"""

import argparse
import json
import pathlib
import re
import sys

LABEL_PARAMS = ("backend", "variant", "cache")


def label_of(bench):
    params = bench.get("params") or {}
    for key in LABEL_PARAMS:
        if key in params:
            return str(params[key])
    return bench["name"]


def throughput(bench, median):
    info = bench.get("extra_info") or {}
    if "items" in info:
        return info["items"] / median, "samples/s"
    if "flops" in info:
        return info["flops"] / median / 1e9, "GFLOP/s"
    return None, ""


def load_groups(path):
    data = json.loads(pathlib.Path(path).read_text())
    groups = {}
    for bench in data["benchmarks"]:
        groups.setdefault(bench.get("group") or bench["name"], []).append(bench)
    return data, groups


def rows_of(benches, baseline):
    medians = {label_of(b): b["stats"]["median"] for b in benches}
    base_label = baseline if baseline in medians else ("numpy" if "numpy" in medians else None)
    rows = []
    for bench in sorted(benches, key=lambda b: b["stats"]["median"]):
        label = label_of(bench)
        median = bench["stats"]["median"]
        rate, unit = throughput(bench, median)
        speedup = medians[base_label] / median if base_label else None
        rows.append((label, median, rate, unit, speedup))
    return rows, base_label


def format_seconds(seconds):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def markdown(groups, baseline):
    lines = []
    for group, benches in groups.items():
        rows, base_label = rows_of(benches, baseline)
        lines += [f"### {group}", "", f"| entry | median | throughput | × {base_label or '-'} |",
                  "|---|---:|---:|---:|"]
        for label, median, rate, unit, speedup in rows:
            rate_text = f"{rate:,.4g} {unit}" if rate is not None else ""
            speed_text = f"{speedup:.2f}" if speedup is not None else ""
            lines.append(f"| {label} | {format_seconds(median)} | {rate_text} | {speed_text} |")
        lines.append("")
    return "\n".join(lines)


def plot(groups, baseline, directory):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'numba-mlp[plot]'): no plots written", file=sys.stderr)
        return []
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for group, benches in groups.items():
        rows, base_label = rows_of(benches, baseline)
        labels = [row[0] for row in rows]
        values = [row[4] if base_label else 1 / row[1] for row in rows]
        figure, axis = plt.subplots(figsize=(6, 0.5 + 0.4 * len(rows)))
        axis.barh(labels, values, color=["tab:orange" if label == base_label else "tab:blue" for label in labels])
        axis.invert_yaxis()
        axis.set_xlabel(f"speed-up over {base_label} (median)" if base_label else "1 / median (1/s)")
        axis.set_title(group, fontsize=10)
        for y, value in enumerate(values):
            axis.text(value, y, f" {value:.3g}", va="center", fontsize=8)
        figure.tight_layout()
        path = directory / (re.sub(r"[^A-Za-z0-9]+", "_", group).strip("_") + ".png")
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="a file written by pytest --benchmark-json")
    parser.add_argument("--baseline", default="torch-cpu", help="entry to compare against (default: torch-cpu)")
    parser.add_argument("--plots", metavar="DIR", help="write one PNG bar chart per group into DIR")
    parser.add_argument("--group", metavar="REGEX", help="only the groups matching this regular expression")
    args = parser.parse_args(argv)
    data, groups = load_groups(args.json)
    if args.group:
        groups = {g: b for g, b in groups.items() if re.search(args.group, g)}
    machine = data.get("machine_info", {})
    print(f"# {args.json}: {machine.get('cpu', {}).get('brand_raw', '?')}, {data.get('datetime', '?')}\n")
    print(markdown(groups, args.baseline))
    if args.plots:
        for path in plot(groups, args.baseline, args.plots):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
