"""The stream benchmark's tables (one per goal of issue 17), JSON and plot, from its trials.

Every figure is a median over rounds, and every ratio the median of per-round ratios: the shared
machine's speed drifts between rounds, a ratio of two methods run back to back in one round
drifts far less. Each table states the store it was measured on; the header states the machine,
the source, and each store's setup.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

GIB = 2**30
MIB = 2**20
#: Row labels of goal 1's detailed table, in table order.
LABELS = {
    "curl": "curl PUT of the spooled file (the limit)",
    "curl_head": "curl PUT, then its first HEAD (work the store deferred)",
    "curl_bytes": "curl PUT, declared application/octet-stream",
    "worker": "worker (celery -c 1): results GET to published result",
    "worker_stream": "worker: of which the stream (GET to upload complete)",
    "worker_sealed": "worker, then its seal task (after the result)",
    "copyurl": "`rclone copyurl` URL to the store: results GET to exit",
    "aws": "`curl URL | aws s3 cp -` (awscli v1): results GET to exit",
    "smart_open": "smart_open writer, iter_content (in a child process)",
    "upload_fileobj": "boto3 upload_fileobj(response.raw) (in a child process)",
    "naive": "naive: read all, put_object (in a child process)",
}
#: What each method's "deferred" column holds.
DEFERRED = {"curl": "first_head_seconds", "copyurl": "first_head_seconds"}
DEFERRED |= {"curl_bytes": "first_head_seconds"}
DEFERRED |= {"aws": "first_head_seconds", "worker": "seal_seconds"}
#: Issue 17's targets, as the tables check them.
STREAM_TARGET = 0.9
CPU_TARGET = 1.5
RSS_GROWTH_TARGET_MIB = 64

Trial = dict[str, Any]


def median_of(values: Iterable[float]) -> float | None:
    picked = list(values)
    return statistics.median(picked) if picked else None


def transfers(trials: Sequence[Trial]) -> list[Trial]:
    return [t for t in trials if t.get("kind") == "transfer" and "error" not in t]


def label_of(trial: Trial) -> str:
    return str(trial["lever"] or trial["method"])


def per_round(trials: Sequence[Trial], key: Callable[[Trial], Any]) -> dict[Any, Trial]:
    """Trials by ``key`` (which should name a round): one trial each."""
    return {key(t): t for t in trials}


def round_ratios(
    trials: Sequence[Trial], store: str, mib: int, top: str, bottom: str, field: str = "mib_per_s"
) -> list[float]:
    """``top``'s ``field`` over ``bottom``'s, round by round, on one store and size."""
    mine = [t for t in trials if t["store"] == store and t["mib"] == mib]
    tops = per_round([t for t in mine if label_of(t) == top], lambda t: t["round"])
    bottoms = per_round([t for t in mine if label_of(t) == bottom], lambda t: t["round"])
    return [tops[r][field] / bottoms[r][field] for r in sorted(tops.keys() & bottoms.keys())]


def summarize(trials: Sequence[Trial]) -> list[dict[str, Any]]:
    """Per store, size and method (or lever): medians, the rounds, and the ratio to curl."""
    done = transfers(trials)
    groups: dict[tuple[str, int, str], list[Trial]] = defaultdict(list)
    for trial in done:
        groups[(trial["store"], trial["mib"], label_of(trial))].append(trial)
    rows = []
    for (store, mib, label), group in groups.items():
        deferred = DEFERRED.get(label)
        cpu = [t["cpu_seconds"] / (t["size"] / GIB) for t in group if "cpu_seconds" in t]
        row: dict[str, Any] = {
            "store": store,
            "mib": mib,
            "label": label,
            "lever": group[0]["lever"] is not None,
            "mib_per_s": median_of(t["mib_per_s"] for t in group),
            "all_mib_per_s": [round(t["mib_per_s"], 1) for t in group],
            "vs_curl": median_of(round_ratios(done, store, mib, label, "curl")),
            "deferred_seconds": median_of(t[deferred] for t in group if deferred in t)
            if deferred
            else None,
            "cpu_s_per_gib": median_of(cpu),
            "store_cpu_s_per_gib": median_of(
                t["store_cpu_seconds"] / (t["size"] / GIB)
                for t in group
                if t.get("store_cpu_seconds") is not None
            ),
            "busy_cores": median_of(t["busy_cores"] for t in group if t.get("busy_cores")),
            "peak_rss_mib": max(t["peak_rss"] for t in group) / MIB,
            "rss_growth_mib": max((t["rss_growth"] for t in group if "rss_growth" in t), default=0)
            / MIB
            if any("rss_growth" in t for t in group)
            else None,
        }
        rows.append(row)
    order = list(LABELS)
    rows.sort(key=lambda r: (r["store"], r["mib"], r["lever"], _position(order, r["label"])))
    return rows


def _position(order: list[str], label: str) -> int:
    return order.index(label) if label in order else len(order)


def cell(text: str) -> str:
    """``text`` in a table cell: a pipe would end the cell, even in a code span."""
    return text.replace("|", "\\|")


def percent(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def times(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def number(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def mark(ok: bool | None) -> str:
    return "" if ok is None else (" ✓" if ok else " ✗")


def goal1_summary(trials: Sequence[Trial], rows: Sequence[dict[str, Any]]) -> list[str]:
    done = transfers(trials)
    lines = [
        "### Goal 1: stream at least 90 % of curl's PUT into the same store, ahead of the "
        "tools a user would reach for",
        "",
        "Each ratio is the median of per-round ratios (worker's MiB/s over the other's, both "
        "in one round); RSS growth is the worker's pool process over its idle RSS, the most "
        "seen in any round.",
        "",
        "| store | size | worker vs curl PUT (≥ 90 %) | worker vs curl PUT as bytes "
        "| worker + seal vs curl PUT + first HEAD "
        "| worker vs rclone copyurl (> 1) | worker vs curl \\| aws s3 cp (> 1) "
        "| RSS growth MiB (≤ 64) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for store, mib in sorted({(r["store"], r["mib"]) for r in rows}):

        def ratio(top: str, bottom: str, store: str = store, mib: int = mib) -> float | None:
            return median_of(round_ratios(done, store, mib, top, bottom))

        stream, sealed = ratio("worker", "curl"), ratio("worker_sealed", "curl_head")
        as_bytes = ratio("worker", "curl_bytes")
        copyurl, aws = ratio("worker", "copyurl"), ratio("worker", "aws")
        worker = next(
            (r for r in rows if (r["store"], r["mib"], r["label"]) == (store, mib, "worker")), None
        )
        growth = worker["rss_growth_mib"] if worker else None
        lines.append(
            f"| {store} | {mib} MiB "
            f"| {percent(stream)}{mark(None if stream is None else stream >= STREAM_TARGET)} "
            f"| {percent(as_bytes)} "
            f"| {percent(sealed)} "
            f"| {times(copyurl)}{mark(None if copyurl is None else copyurl > 1)} "
            f"| {times(aws)}{mark(None if aws is None else aws > 1)} "
            f"| {number(growth)}"
            f"{mark(None if growth is None else growth <= RSS_GROWTH_TARGET_MIB)} |"
        )
    return lines


def goal1_detail(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "Every method, per store and size. *Deferred* is what the store left for later: for "
        "curl, copyurl and aws the first HEAD after the upload (rclone computes a new file's "
        "MD5 there), for the worker its seal task after the result (whose copy pays the same). "
        "*Store CPU* is the S3 server's process over the trial (the worker's from its download's "
        "start, the seal included; a command's whole run, its first HEAD included); "
        "*busy cores*, the machine's over the same span (2 is all of it): where the store's "
        "own CPU fills the machine, a method's speed is what the store leaves it.",
        "",
        "| store | size | method | MiB/s, median | vs curl PUT, median of rounds | rounds, MiB/s "
        "| deferred s, median | CPU s/GiB, median | store CPU s/GiB, median "
        "| busy cores, median | peak RSS MiB | RSS growth MiB |",
        "|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row["lever"]:
            continue
        lines.append(
            f"| {row['store']} | {row['mib']} MiB | {cell(LABELS.get(row['label'], row['label']))} "
            f"| {number(row['mib_per_s'])} | {percent(row['vs_curl'])} "
            f"| {', '.join(f'{v:.0f}' for v in row['all_mib_per_s'])} "
            f"| {number(row['deferred_seconds'], 2)} | {number(row['cpu_s_per_gib'], 2)} "
            f"| {number(row['store_cpu_s_per_gib'], 1)} | {number(row['busy_cores'], 2)} "
            f"| {number(row['peak_rss_mib'])} | {number(row['rss_growth_mib'])} |"
        )
    return lines


def goal2(trials: Sequence[Trial]) -> list[str]:
    """The worker's pool process CPU per GiB against the sha256 floor of the same round."""
    workers = [t for t in transfers(trials) if t["method"] == "worker" and t["lever"] is None]
    floors = [t for t in trials if t.get("kind") == "floor" and "error" not in t]
    lines = [
        "",
        "### Goal 2: the pool process's CPU close to the floor",
        "",
        "CPU is user + sys of the worker's pool process (all its threads), sampled every 5 ms: "
        "for the download task, from the moment it logged its start to its result; for the "
        "whole export, from the send (its export, create and poll tasks too). The floor is "
        "`hashlib.sha256` over the same spooled file, read from page cache in 16 MiB chunks by a "
        "fresh process (`bench/floor.py`), in the same round.",
        "",
        "| store | size | download task CPU s/GiB (user + sys) | of which sys "
        "| whole export CPU s/GiB | sha256 floor CPU s/GiB "
        "| download task / floor, median of rounds (≤ 1.5x) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    keys = sorted({(t["store"], t["mib"]) for t in workers})
    for store, mib in keys:
        mine = [t for t in workers if (t["store"], t["mib"]) == (store, mib)]
        floor = per_round(
            [t for t in floors if (t["store"], t["mib"]) == (store, mib)], lambda t: t["round"]
        )
        per_gib = [t["cpu_seconds"] / (t["size"] / GIB) for t in mine]
        sys_per_gib = [t["cpu_sys_seconds"] / (t["size"] / GIB) for t in mine]
        export_per_gib = [t["cpu_export_seconds"] / (t["size"] / GIB) for t in mine]
        floor_per_gib = [f["cpu_seconds"] / (f["bytes"] / GIB) for f in floor.values()]
        ratios = [
            (t["cpu_seconds"] / t["size"]) / (f["cpu_seconds"] / f["bytes"])
            for t in mine
            if (f := floor.get(t["round"])) is not None and f["cpu_seconds"] > 0
        ]
        ratio = median_of(ratios)
        lines.append(
            f"| {store} | {mib} MiB | {number(median_of(per_gib), 2)} "
            f"| {number(median_of(sys_per_gib), 2)} | {number(median_of(export_per_gib), 2)} "
            f"| {number(median_of(floor_per_gib), 2)} "
            f"| {times(ratio)}{mark(None if ratio is None else ratio <= CPU_TARGET)} |"
        )
    return lines


def goal4(trials: Sequence[Trial]) -> list[str]:
    """N worker exports at once against N curl PUTs at once (plain, and declared as bytes),
    aggregate MiB/s."""
    parallel = [t for t in trials if t.get("kind") == "parallel" and "error" not in t]
    lines = [
        "### Goal 4: parallel downloads on one worker",
        "",
        "N exports at once on one worker started with `-c N`, for as many accounts as the "
        "table says (the worker POSTs one account's exports ~1 s apart), against N curl PUTs "
        "of the spooled file at once into the same store, plain and declared as bytes "
        "(`application/octet-stream`, which SeaweedFS charges less for than an untyped body). "
        "Aggregate MiB/s is all bytes over "
        "the wall time: for the worker from the first results GET to the last result, for curl "
        "from the first start to the last exit. *GET spread* is how long after the first "
        "results GET the last one came (the median of rounds): the part of the wall time "
        "before all N downloads ran.",
        "",
        "| store | N | accounts | size each | curl PUTs MiB/s, median | worker MiB/s, median "
        "| worker vs curl, median of rounds (≥ 90 %) | worker vs curl PUTs as bytes "
        "| GET spread s | rounds, worker / curl MiB/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for store, n, mib, accounts in sorted(
        {(t["store"], t["n"], t["mib"], t["accounts"]) for t in parallel}
    ):
        mine = [
            t
            for t in parallel
            if (t["store"], t["n"], t["mib"], t["accounts"]) == (store, n, mib, accounts)
        ]
        curl = per_round([t for t in mine if t["method"] == "curl"], lambda t: t["round"])
        worker = per_round([t for t in mine if t["method"] == "worker"], lambda t: t["round"])
        both = sorted(curl.keys() & worker.keys())
        ratio = median_of(worker[r]["mib_per_s"] / curl[r]["mib_per_s"] for r in both)
        typed = per_round([t for t in mine if t["method"] == "curl_bytes"], lambda t: t["round"])
        as_bytes = median_of(
            worker[r]["mib_per_s"] / typed[r]["mib_per_s"]
            for r in sorted(typed.keys() & worker.keys())
        )
        rounds = ", ".join(f"{worker[r]['mib_per_s']:.0f}/{curl[r]['mib_per_s']:.0f}" for r in both)
        spread = median_of(
            max(e["get_offset_seconds"] for e in t["exports"]) for t in worker.values()
        )
        lines.append(
            f"| {store} | {n} | {accounts} | {mib} MiB "
            f"| {number(median_of(t['mib_per_s'] for t in curl.values()))} "
            f"| {number(median_of(t['mib_per_s'] for t in worker.values()))} "
            f"| {percent(ratio)}{mark(None if ratio is None else ratio >= STREAM_TARGET)} "
            f"| {percent(as_bytes)} | {number(spread, 2)} | {rounds} |"
        )
    return lines


def levers(rows: Sequence[dict[str, Any]]) -> list[str]:
    picked = [r for r in rows if r["lever"]]
    if not picked:
        return []
    lines = [
        "",
        "Levers of this project's path (in-process, `bench/methods.py pipeline`):",
        "",
        "| store | size | variant | MiB/s, median | vs curl PUT, median of rounds | peak RSS MiB |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for row in picked:
        lines.append(
            f"| {row['store']} | {row['mib']} MiB | {row['label']} | {number(row['mib_per_s'])} "
            f"| {percent(row['vs_curl'])} | {number(row['peak_rss_mib'])} |"
        )
    return lines


def failures(trials: Sequence[Trial]) -> list[str]:
    failed = [t for t in trials if "error" in t]
    if not failed:
        return []
    lines = ["", "Failed trials (left out of every figure above):", ""]
    for t in failed:
        where = f"{t.get('store')}, {t.get('mib')} MiB, round {t.get('round')}"
        lines.append(f"- {t.get('lever') or t.get('method')} ({where}): {t['error'][:300]}")
    return lines


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": psutil.cpu_count(),
        "cpu_model": model or platform.processor(),
        "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }


#: Setting names a report never prints: their values may be credentials.
SECRET_NAME = re.compile("KEY|SECRET|TOKEN|PASSWORD")
#: S3 settings every benchmark sets for its own store, whatever the environment says.
BENCH_SETS = frozenset({"S3_BUCKET", "S3_ENDPOINT_URL"})


def worker_settings_note(environ: Mapping[str, str] = os.environ) -> str:
    """The S3 settings this run's environment gives the worker's code (a worker process inherits
    the environment, ``devstack.worker``), so that a run with, say, ``S3_PARTS_IN_FLIGHT=2``
    says so. Names are matched as the settings read them, in any case; the ones the benchmark
    sets itself and any that could hold a secret are left out."""
    given = sorted(
        f"{name.upper()}={value}"
        for name, value in environ.items()
        if name.upper().startswith("S3_")
        and name.upper() not in BENCH_SETS
        and not SECRET_NAME.search(name.upper())
    )
    return "worker settings: " + (", ".join(given) if given else "the defaults (no S3_* set)")


def header(command: str, context: dict[str, Any]) -> list[str]:
    host = context["machine"]
    lines = [
        f"`{command}` — {context['date']}",
        "",
        f"- machine: {host['nproc']} CPUs ({host['cpu_model']}), {host['memory_gib']} GiB, "
        f"Linux {host['kernel']}, {host['python']}; shared, so compare ratios, not MiB/s",
        f"- source: {context['source']}",
    ]
    lines += [f"- store `{name}`: {text}" for name, text in context["stores"].items()]
    if context.get("notes"):
        lines += [f"- {note}" for note in context["notes"]]
    return [*lines, ""]


def plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Goal 1 as bars: one panel per store, MiB/s per size and method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [
        r
        for r in rows
        if not r["lever"] and r["label"] in ("curl", "curl_bytes", "worker", "copyurl", "aws")
    ]
    stores = sorted({r["store"] for r in shown})
    if not stores:
        return
    figure, axes = plt.subplots(1, len(stores), figsize=(5 * len(stores), 4.5), squeeze=False)
    labels = [m for m in LABELS if any(r["label"] == m for r in shown)]
    width = 0.8 / max(len(labels), 1)
    for axis, store in zip(axes[0], stores, strict=True):
        sizes = sorted({r["mib"] for r in shown if r["store"] == store})
        for index, label in enumerate(labels):
            values = [
                next(
                    (
                        r["mib_per_s"]
                        for r in shown
                        if (r["store"], r["mib"], r["label"]) == (store, s, label)
                    ),
                    0,
                )
                for s in sizes
            ]
            xs = [i + index * width for i in range(len(sizes))]
            axis.bar(xs, values, width, label=LABELS[label])
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(sizes))])
        axis.set_xticklabels([f"{s} MiB" for s in sizes])
        axis.set_title(f"{store}: MiB/s, median of rounds")
    axes[0][0].legend(fontsize=7, loc="lower left")
    figure.suptitle("sandbox CSV -> S3 on loopback")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(
    trials: Sequence[Trial],
    directory: Path,
    *,
    command: str,
    context: dict[str, Any],
    name: str = "stream",
) -> str:
    """``name``.md and .json (and .png for goal 1) in ``directory``; the markdown is returned."""
    rows = summarize(trials)
    lines = header(command, context)
    if any(t.get("kind") == "parallel" for t in trials):
        lines += goal4(trials)
    else:
        lines += goal1_summary(trials, rows) + goal1_detail(rows) + goal2(trials)
        lines += levers(rows)
    lines += failures(trials)
    for note in context.get("footnotes", []):
        lines += ["", note]
    table = "\n".join(lines) + "\n"
    (directory / f"{name}.md").write_text(table)
    document = {"command": command, **context, "rows": rows, "trials": list(trials)}
    (directory / f"{name}.json").write_text(json.dumps(document, indent=1))
    if rows:
        plot(rows, directory / f"{name}.png")
    return table
