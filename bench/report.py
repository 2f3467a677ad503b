"""Read pytest-benchmark JSON and print, per group, each entry's median, spread, throughput and ratios.

    python bench/report.py RESULTS.json [--group REGEX] [--plots DIR]

Columns, per group:

* **median** and **IQR** (interquartile range) of the rounds;
* **throughput**: samples/s for training, GFLOP/s for products, Gelem/s for
  per-element ops (from each benchmark's ``extra_info``); in the wide-net groups
  also the share of NumPy's sgemm rate measured in the same run (the best of
  the ``sgemm numpy`` group);
* **× reference**: the NumPy reference's median over the entry's (the
  reference is written for readability, not tuned);
* **× <peer>**: the fastest peer's median over the entry's, the peer named in
  the header; in groups that mark a baseline instead (an optimiser setting,
  scikit-learn's estimator), the baseline's;
* **paired rounds**, in groups whose entries timed a paired run before each
  round (:class:`bench.conftest.Paired`: this library's backend before each
  peer's epoch, plain SGD before each optimiser setting's, scikit-learn's
  estimator before this project's, NumPy's sgemm before each wide net's): the
  median and IQR of the rounds' own ratios, the entry's time over the paired
  run's, the paired run's time over the entry's (a speed-up), or the entry's
  rate as a share of the paired run's. A slow spell of the machine moves these
  less than a ratio of two medians timed one entry after the other.

Ratios are of one run's medians, printed to two significant figures. With
matplotlib installed, ``--plots DIR`` writes one bar chart per group.
"""

import argparse
import json
import pathlib
import re
import sys

LABEL_PARAMS = ("backend", "variant", "estimator")


def label_of(bench):
    info = bench.get("extra_info") or {}
    if "label" in info:
        return str(info["label"])
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
    if "elements" in info:
        return info["elements"] / median / 1e9, "Gelem/s"
    return None, ""


def load_groups(path):
    data = json.loads(pathlib.Path(path).read_text())
    groups = {}
    for bench in data["benchmarks"]:
        groups.setdefault(bench.get("group") or bench["name"], []).append(bench)
    return data, groups


def sgemm_rate(groups):
    """NumPy's best sgemm rate in this run (GFLOP/s), or None."""
    rates = [throughput(b, b["stats"]["median"])[0] for b in groups.get("sgemm numpy", [])]
    return max(rates) if rates else None


def comparison_of(benches):
    """``(label, median)`` of the entry each row is compared with: the marked baseline, else the fastest peer."""
    marked = [b for b in benches if (b.get("extra_info") or {}).get("baseline")]
    candidates = marked or [b for b in benches if (b.get("extra_info") or {}).get("peer")]
    if not candidates:
        return None, None
    best = min(candidates, key=lambda b: b["stats"]["median"])
    return label_of(best), best["stats"]["median"]


def paired_ratios(bench):
    """``(kind, ratios)``, the per-round ratios of an entry that timed a paired run before each round, or None
    for an entry without one. ``kind`` says what they are: ``"share"``, its rate over the paired run's, where
    both count FLOPs; ``"speedup"``, the paired run's time over its own, where it asked for one; else
    ``"time"``, its time over the paired run's."""
    info = bench.get("extra_info") or {}
    seconds, paired = info.get("round_seconds"), info.get("paired_seconds")
    if not seconds or not paired or len(seconds) != len(paired):
        return None
    if info.get("flops") and info.get("paired_flops"):
        return "share", [(info["flops"] / t) / (info["paired_flops"] / tp) for t, tp in zip(seconds, paired)]
    if info.get("paired_speedup"):
        return "speedup", [tp / t for t, tp in zip(seconds, paired)]
    return "time", [t / tp for t, tp in zip(seconds, paired)]


def quartiles(values):
    """``(q1, median, q3)`` by linear interpolation, as NumPy's default percentiles (and pytest-benchmark's)."""
    ordered = sorted(values)

    def at(fraction):
        position = fraction * (len(ordered) - 1)
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    return at(0.25), at(0.5), at(0.75)


def paired_text(bench):
    """The "paired rounds" cell: ``1.8× plain SGD's time (IQR 0.1)``, ``86% of numpy sgemm 2048³ (IQR 3)`` or
    ``2.9× faster than scikit-learn MLPClassifier (IQR 0.2)``."""
    paired = paired_ratios(bench)
    if paired is None:
        return ""
    kind, ratios = paired
    q1, median, q3 = quartiles(ratios)
    label = bench["extra_info"]["paired_label"]
    if kind == "share":
        return f"{100 * median:.0f}% of {label} (IQR {100 * (q3 - q1):.2g})"
    if kind == "speedup":
        return f"{ratio(median)}× faster than {label} (IQR {q3 - q1:.2g})"
    return f"{ratio(median)}× {label}'s time (IQR {q3 - q1:.2g})"


def ratio(value):
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"


def rows_of(benches, sgemm=None):
    """Rows ``(label, median, iqr, throughput text, × reference, × comparison, paired rounds text)``, fastest
    first."""
    reference = [b["stats"]["median"] for b in benches if label_of(b) == "numpy"]
    _, compared = comparison_of(benches)
    rows = []
    for bench in sorted(benches, key=lambda b: b["stats"]["median"]):
        median = bench["stats"]["median"]
        rate, unit = throughput(bench, median)
        rate_text = f"{rate:,.4g} {unit}" if rate is not None else ""
        if sgemm and unit == "GFLOP/s" and bench.get("group", "").startswith("wide"):
            rate_text += f" ({100 * rate / sgemm:.0f}% of sgemm)"
        rows.append((label_of(bench), median, bench["stats"]["iqr"], rate_text,
                     reference[0] / median if reference else None, compared / median if compared else None,
                     paired_text(bench)))
    return rows


def format_seconds(seconds):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def markdown(groups):
    sgemm = sgemm_rate(groups)
    lines = []
    if sgemm:
        lines += [f"NumPy sgemm in this run: {sgemm:.4g} GFLOP/s (best of the `sgemm numpy` group)", ""]
    for group, benches in groups.items():
        compared_label, _ = comparison_of(benches)
        with_paired = any(paired_ratios(b) for b in benches)
        lines += [f"### {group}", "",
                  f"| entry | median | IQR | throughput | × reference | × {compared_label or '-'} |"
                  + (" paired rounds |" if with_paired else ""),
                  "|---|---:|---:|---:|---:|---:|" + ("---:|" if with_paired else "")]
        for label, median, iqr, rate_text, versus_reference, versus_compared, paired in rows_of(benches, sgemm):
            lines.append(f"| {label} | {format_seconds(median)} | {format_seconds(iqr)} | {rate_text} | "
                         f"{ratio(versus_reference) if versus_reference else ''} | "
                         f"{ratio(versus_compared) if versus_compared else ''} |"
                         + (f" {paired} |" if with_paired else ""))
        lines.append("")
    return "\n".join(lines)


def plot(groups, directory):
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
        compared_label, _ = comparison_of(benches)
        rows = rows_of(benches)
        labels = [row[0] for row in rows]
        values = [row[5] if compared_label else 1 / row[1] for row in rows]
        figure, axis = plt.subplots(figsize=(7, 0.5 + 0.4 * len(rows)))
        axis.barh(labels, values, color=["tab:orange" if label == compared_label else "tab:blue" for label in labels])
        axis.invert_yaxis()
        axis.set_xlabel(f"speed-up over {compared_label} (median)" if compared_label else "1 / median (1/s)")
        axis.set_title(group, fontsize=10)
        for y, value in enumerate(values):
            axis.text(value, y, f" {value:.2g}", va="center", fontsize=8)
        figure.tight_layout()
        path = directory / (re.sub(r"[^A-Za-z0-9]+", "_", group).strip("_") + ".png")
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="a file written by pytest --benchmark-json")
    parser.add_argument("--plots", metavar="DIR", help="write one PNG bar chart per group into DIR")
    parser.add_argument("--group", metavar="REGEX", help="only the groups matching this regular expression")
    args = parser.parse_args(argv)
    data, groups = load_groups(args.json)
    if args.group:
        groups = {g: b for g, b in groups.items() if re.search(args.group, g) or g == "sgemm numpy"}
    machine = data.get("machine_info", {})
    print(f"# {args.json}: {machine.get('cpu', {}).get('brand_raw', '?')}, {data.get('datetime', '?')}\n")
    print(markdown(groups))
    if args.plots:
        for path in plot(groups, args.plots):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
