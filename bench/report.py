"""The benchmark's table, JSON and plot, from its trials."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

#: Row labels, in table order.
LABELS = {
    "curl": "(a) curl PUT of the file (limit)",
    "curl_head": "(a) then its first HEAD: rclone's deferred MD5, as (e)'s seal pays it",
    "smart_open": "(b) smart_open writer, iter_content",
    "upload_fileobj": "(c) boto3 upload_fileobj(response.raw)",
    "naive": "(d) naive: read all, put_object",
    "worker": "(e) download_csv in a celery worker: GET to result",
    "worker_stream": "(e) of which the stream: GET to upload complete",
    "worker_sealed": "(e) and then the seal task, after the result",
}


def best(trials: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size and method (or lever): the fastest trial, with the largest RSS seen in any."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for trial in trials:
        if "error" in trial:
            continue
        groups.setdefault((trial["mib"], trial["lever"] or trial["method"]), []).append(trial)
    curl_by_round = {
        (t["mib"], t["round"]): t["mib_per_s"]
        for (_, label), group in groups.items()
        if label == "curl"
        for t in group
    }
    rows = []
    for (mib, label), group in groups.items():
        fastest = max(group, key=lambda t: t["mib_per_s"])
        row = {
            "mib": mib,
            "label": label,
            "lever": group[0]["lever"] is not None,
            "mib_per_s": fastest["mib_per_s"],
            "all_mib_per_s": [round(t["mib_per_s"], 1) for t in group],
            "peak_rss_mib": max(t["peak_rss"] for t in group) / 2**20,
        }
        growth = [t["rss_growth"] for t in group if "rss_growth" in t]
        if growth:
            row["rss_growth_mib"] = max(growth) / 2**20
            row["idle_rss_mib"] = min(t["idle_rss"] for t in group) / 2**20
        # The machine's speed drifts between rounds; a ratio within one round does not.
        ratios = [
            t["mib_per_s"] / curl_by_round[(t["mib"], t["round"])]
            for t in group
            if (t["mib"], t["round"]) in curl_by_round
        ]
        if ratios:
            row["vs_limit_median"] = statistics.median(ratios)
        rows.append(row)
    for row in rows:
        limit = next(r for r in rows if r["mib"] == row["mib"] and r["label"] == "curl")
        smart = [r for r in rows if r["mib"] == row["mib"] and r["label"] == "smart_open"]
        row["vs_limit"] = row["mib_per_s"] / limit["mib_per_s"]
        if smart:
            row["vs_smart_open"] = row["mib_per_s"] / smart[0]["mib_per_s"]
    return rows


def markdown(rows: Sequence[dict[str, Any]], command: str) -> str:
    lines = [
        f"`{command}` — {time.strftime('%Y-%m-%d %H:%M')}, {psutil.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}",
        "",
        "| size | method | MiB/s | vs (a) | vs (a), median of rounds | vs (b) | peak RSS MiB "
        "| RSS growth over idle MiB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in sorted(rows, key=lambda r: (r["mib"], r["lever"], r["label"])):
        if row["lever"]:
            continue
        growth = f"{row['rss_growth_mib']:.0f}" if "rss_growth_mib" in row else ""
        lines.append(
            f"| {row['mib']} MiB | {LABELS.get(row['label'], row['label'])} "
            f"| {row['mib_per_s']:.0f} | {row['vs_limit']:.0%} "
            f"| {row.get('vs_limit_median', 0):.0%} "
            f"| {row.get('vs_smart_open', 0):.2f}x | {row['peak_rss_mib']:.0f} | {growth} |"
        )
    levers = [r for r in rows if r["lever"]]
    if levers:
        lines += [
            "",
            "Levers of this project's path (in-process, `bench/methods.py pipeline`):",
            "",
            "| size | variant | MiB/s | vs (a) | vs (a), median of rounds | peak RSS MiB |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for row in levers:
            lines.append(
                f"| {row['mib']} MiB | {row['label']} | {row['mib_per_s']:.0f} "
                f"| {row['vs_limit']:.0%} | {row.get('vs_limit_median', 0):.0%} "
                f"| {row['peak_rss_mib']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["mib"] for r in rows})
    labels = [m for m in LABELS if any(r["label"] == m for r in rows)]
    figure, (speed, memory) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(labels)
    for index, label in enumerate(labels):
        picked = [
            next((r for r in rows if r["mib"] == s and r["label"] == label), None) for s in sizes
        ]
        xs = [i + index * width for i in range(len(sizes))]
        speed.bar(xs, [r["mib_per_s"] if r else 0 for r in picked], width, label=LABELS[label])
        memory.bar(xs, [r["peak_rss_mib"] if r else 0 for r in picked], width)
    for axis, title in ((speed, "throughput, MiB/s"), (memory, "peak RSS, MiB (log)")):
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(sizes))])
        axis.set_xticklabels([f"{s} MiB" for s in sizes])
        axis.set_title(title)
    memory.set_yscale("log")
    speed.legend(fontsize=7, loc="upper left")
    figure.suptitle("sandbox CSV -> rclone serve s3 on loopback")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(
    trials: Sequence[dict[str, Any]], directory: Path, *, command: str, name: str = "stream"
) -> str:
    """``name``.md, .json and .png in ``directory``; the table is returned too."""
    rows = best(trials)
    table = markdown(rows, command)
    (directory / f"{name}.md").write_text(table)
    (directory / f"{name}.json").write_text(
        json.dumps({"command": command, "rows": rows, "trials": list(trials)}, indent=1)
    )
    plot([r for r in rows if not r["lever"]], directory / f"{name}.png")
    return table
