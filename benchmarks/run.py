"""Run the hrdash benchmarks and print ONE markdown table.

    python benchmarks/run.py --quick          # < 2 minutes: browser, fan-out 100/1,000, ingest
    python benchmarks/run.py                  # ~12 minutes: + fan-out 5,000/10,000, soak
    python benchmarks/run.py --only fanout    # one section: browser | fanout | ingest | soak

Writes ``benchmarks/results/results.json`` (every number, raw samples included) and PNG plots in
``benchmarks/results/``. Numbers are measured and reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS, machine

SECTIONS = ("browser", "fanout", "ingest", "soak")
PEERS = ("interval_peer", "server_callback_peer")


def run_section(name: str, args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    if name == "browser":
        from benchmarks import browser_latency

        return browser_latency.run(quick, period=args.period)
    if name == "fanout":
        from benchmarks import fanout

        return fanout.run(quick)
    if name == "ingest":
        from benchmarks import ingest

        return ingest.run(quick)
    from benchmarks import soak

    return soak.run(args.soak_seconds, period=args.period)


# -- the table -----------------------------------------------------------------------------


def fmt(x: Any, digits: int = 0) -> str:
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if abs(x) >= 10000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def ratio(peer: Any, ours: Any) -> str:
    if not isinstance(peer, (int, float)) or not isinstance(ours, (int, float)):
        return "—"
    if ours == 0:
        return "inf" if peer else "—"
    return f"{peer / ours:.2f}x"


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def table(results: dict[str, Any]) -> str:
    head = (
        "| figure | hrdash | interval peer | server-callback peer "
        "| ratio interval/hrdash | ratio server-cb/hrdash |\n|---|---:|---:|---:|---:|---:|"
    )
    rows: list[str] = [head]

    def row(label: str, values: list[Any], digits: int = 0, ratios: bool = True) -> None:
        ours = values[0]
        cells = [fmt(v, digits) for v in values]
        cells += ["—"] * (3 - len(cells))
        rs = [ratio(v, ours) for v in values[1:]] if ratios and len(values) > 1 else []
        rs += ["—"] * (2 - len(rs))
        rows.append(f"| {label} | " + " | ".join(cells + rs) + " |")

    sections = results["sections"]
    br = sections.get("browser")
    if isinstance(br, dict) and "apps" in br:
        apps = [br["apps"].get(n) for n in ("hrdash", *PEERS)]
        hz = 1 / br["period_s"]
        tag = f"(sim {hz:g} Hz)"
        for display, label in (
            ("card", "current card"),
            ("table", "table row"),
            ("chart", "chart point"),
        ):
            for q in ("p50", "p99"):
                row(
                    f"browser: reading → {label}, {q} (ms) {tag}",
                    [_get(a, "latency_ms", display, q) for a in apps],
                )
        for display in ("card", "table", "chart"):
            row(
                f"browser: readings that reached the {display} (%)",
                [
                    100 * v if (v := _get(a, "coverage", display)) is not None else None
                    for a in apps
                ],
                ratios=False,
            )
        row(
            f"browser: page open → 20 rows, median of {br['loads']} (ms)",
            [_get(a, "load_to_20_rows_ms", "p50") for a in apps],
        )
        row(
            f"browser: Dash `_dash-update-component` requests / min / viewer {tag}",
            [_get(a, "dash_requests_per_min") for a in apps],
        )
        row(
            "browser: Dash server CPU % with 1 viewer (app process, no children)",
            [_get(a, "server", "cpu_percent") for a in apps],
            2,
        )
        row(
            "browser: Chromium CPU % (all its processes, 1 page)",
            [_get(a, "browser", "cpu_percent") for a in apps],
            1,
        )
        row("browser: page JS heap (MB)", [_get(a, "js_heap_mb") for a in apps], 1)
        row(
            f"bridge with 1 viewer: CPU % over {br['window_s']:g} s (same bridge for all)",
            [_get(a, "bridge", "cpu_percent") for a in apps],
            2,
        )
        row(
            "bridge with 1 viewer: RSS (MB)",
            [_get(a, "bridge", "rss_max_mb") for a in apps],
            1,
            ratios=False,
        )
        exits = br.get("bridge_exit_lines") or []
        codes = sorted({ln.split("status ", 1)[-1].split(")")[0] for ln in exits})
        row(
            "browser: bridge restarts during the section (exit status)",
            [f"{br.get('bridge_restarts', 0)}" + (f" ({', '.join(codes)})" if codes else "")],
        )
    elif br is not None:
        rows.append(f"| browser: ERROR {fmt(_get(br, 'error'))[:80]} | — | — | — | — | — |")
    fo = sections.get("fanout")
    if isinstance(fo, dict) and "levels" in fo:
        base = _get(fo, "idle", "rss_mean_mb")
        row("fan-out: bridge RSS with 0 viewers (MB)", [base], 1)
        for lv in fo["levels"]:
            n = f"{lv['viewers']:,}"
            row(f"fan-out {n} viewers: delivery age p50 (ms)", [_get(lv, "age_ms", "p50")], 1)
            row(f"fan-out {n} viewers: delivery age p99 (ms)", [_get(lv, "age_ms", "p99")], 1)
            row(
                f"fan-out {n} viewers: gaps / duplicates / dropped slow",
                [f"{lv['gaps']} / {lv['duplicates']} / {lv['dropped_slow']}"],
            )
            row(
                f"fan-out {n} viewers: CPU % bridge / load / probes (of 1 core) / machine (of all)",
                [
                    " / ".join(
                        fmt(v, 0)
                        for v in (
                            _get(lv, "bridge", "cpu_percent"),
                            lv.get("load_cpu_percent"),
                            lv.get("probe_cpu_percent"),
                            lv.get("machine_cpu_percent"),
                        )
                    )
                ],
            )
            row(
                f"fan-out {n} viewers: handshakes failed / retried; closed by the bridge",
                [
                    f"{lv.get('connect_failed', 0)} / {lv.get('connect_retried', 0)}; "
                    f"{lv.get('load_closed_by_bridge', 0)}"
                ],
            )
            row(f"fan-out {n} viewers: bridge RSS (MB)", [_get(lv, "bridge", "rss_mean_mb")], 1)
            row(f"fan-out {n} viewers: memory per viewer (KB)", [lv.get("mem_per_viewer_kb")], 1)
        sv = fo.get("slow_viewer")
        if isinstance(sv, dict) and "baseline" in sv:
            tag = f"{sv['viewers']} viewers, sim {1 / sv['simulator_period_s']:g} Hz"
            row(
                f"slow viewer ({tag}): probe age p50 / p99 without (ms)",
                [
                    f"{fmt(_get(sv, 'baseline', 'age_ms', 'p50'), 1)} / "
                    f"{fmt(_get(sv, 'baseline', 'age_ms', 'p99'), 1)}"
                ],
            )
            row(
                f"slow viewer: probe age p50 / p99 with 1 never-reading viewer, "
                f"{sv['seconds_with_slow']:g} s (ms)",
                [
                    f"{fmt(_get(sv, 'with_slow', 'age_ms', 'p50'), 1)} / "
                    f"{fmt(_get(sv, 'with_slow', 'age_ms', 'p99'), 1)}"
                ],
            )
            row("slow viewer: p99 difference (ms)", [sv.get("p99_delta_ms")], 1)
            ev = sv.get("events_s_after_connect") or {}
            row(
                f"slow viewer: dropped as slow (viewer_buffer {sv['viewer_buffer']:,} B)",
                [
                    f"after {sv['dropped_after_s']} s"
                    if sv.get("dropped_slow")
                    else "no"
                    + (f"; connection gone after {ev['tcp_gone']} s" if "tcp_gone" in ev else "")
                ],
            )
            sq = [x for x in sv.get("bridge_send_queue") or [] if "send_q" in x]
            if sq:
                row(
                    "slow viewer: bridge kernel send queue at its last sample (bytes; sndbuf)",
                    [f"{sq[-1]['send_q']:,} at {sq[-1]['t']} s; {sq[-1].get('sndbuf', 0):,}"],
                )
        elif isinstance(sv, dict):
            rows.append(f"| slow viewer: ERROR {fmt(sv.get('error'))[:80]} | — | — | — | — | — |")
    elif fo is not None:
        rows.append(f"| fan-out: ERROR {fmt(_get(fo, 'error'))[:80]} | — | — | — | — | — |")
    ing = sections.get("ingest")
    if isinstance(ing, dict) and "core" in ing:
        row(
            "ingest: parse_frame + RingBuffer.append, one core (frames/s)",
            [_get(ing, "core", "parse_frame_append_per_s")],
        )
        row(
            "ingest: FrameReader.feed + append (the bridge's path), one core (frames/s)",
            [_get(ing, "core", "frame_reader_append_per_s")],
        )
        row(
            f"ingest: bridge end to end, {_get(ing, 'bridge', 'frames'):,} frames (frames/s)",
            [_get(ing, "bridge", "frames_per_s")],
        )
    elif ing is not None:
        rows.append(f"| ingest: ERROR {fmt(_get(ing, 'error'))[:80]} | — | — | — | — | — |")
    sk = sections.get("soak")
    if isinstance(sk, dict) and "samples" in sk:
        mins = f"{sk['seconds'] / 60:g} min"
        for key, label in (
            ("bridge_rss_mb", "bridge RSS"),
            ("server_rss_mb", "Dash server RSS"),
            ("js_heap_mb", "page JS heap"),
        ):
            row(
                f"soak {mins}, {sk['viewers']} viewers: {label} first → last (MB)",
                [f"{sk[key]['first']:.1f} → {sk[key]['last']:.1f}"],
            )
            row(
                f"soak {mins}: {label} slope, 2nd half (MB/h)",
                [sk[key]["slope_mb_per_hour_2nd_half"]],
                1,
            )
    elif sk is not None:
        rows.append(f"| soak: ERROR {fmt(_get(sk, 'error'))[:80]} | — | — | — | — | — |")
    return "\n".join(rows)


# -- plots ---------------------------------------------------------------------------------


def plots(results: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    made = []
    sections = results["sections"]
    br = sections.get("browser")
    if isinstance(br, dict) and "apps" in br:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharey=True)
        for ax, display in zip(axes, ("card", "table", "chart"), strict=True):
            for name, app in br["apps"].items():
                values = sorted(v for v in app["raw_ms"][display] if v > 0)
                if not values:
                    continue
                ys = [(i + 1) / len(values) for i in range(len(values))]
                ax.step(values, ys, where="post", label=f"{name} (n={len(values)})")
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"reading time → {display} (DOM)")
            ax.set_xlabel("latency (ms, log)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        axes[0].set_ylabel("fraction of readings (ECDF)")
        fig.suptitle(f"Browser end to end, simulator at {1 / br['period_s']:g} Hz")
        fig.tight_layout()
        path = RESULTS / f"latency-{results['mode']}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(str(path))
    fo = sections.get("fanout")
    if isinstance(fo, dict) and fo.get("levels"):
        levels = fo["levels"]
        xs = [lv["viewers"] for lv in levels]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.plot(xs, [lv["age_ms"]["p50"] for lv in levels], "o-", label="age p50")
        ax.plot(xs, [lv["age_ms"]["p99"] for lv in levels], "s-", label="age p99")
        ax.set_xscale("log")
        ax.set_xlabel("viewers")
        ax.set_ylabel("delivery age (ms)")
        ax2 = ax.twinx()
        ax2.plot(
            xs, [lv["bridge"]["cpu_percent"] for lv in levels], "^--", color="grey", label="bridge"
        )
        ax2.plot(
            xs,
            [lv.get("machine_cpu_percent") for lv in levels],
            "v:",
            color="black",
            label="whole machine",
        )
        ax2.set_ylabel("CPU % (bridge: of one core; machine: of all cores)")
        ax2.legend(loc="center left", fontsize=8)
        ax.legend(loc="upper left")
        ax.grid(True, alpha=0.3)
        ax.set_title("Fan-out: delivery age on 5 probe viewers vs viewers")
        fig.tight_layout()
        path = RESULTS / f"fanout_age-{results['mode']}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(str(path))
    sk = sections.get("soak")
    if isinstance(sk, dict) and sk.get("samples"):
        s = sk["samples"]
        ts = [x["t"] / 60 for x in s]
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
        a1.plot(ts, [x["bridge_rss_mb"] for x in s], label="bridge RSS")
        a1.plot(ts, [x["server_rss_mb"] for x in s], label="Dash server RSS")
        a1.set_ylabel("MB")
        a1.legend()
        a1.grid(True, alpha=0.3)
        a1.set_title(f"Soak: {sk['viewers']} viewers, simulator at {1 / sk['period_s']:g} Hz")
        a2.plot(ts, [x["js_heap_mb"] for x in s], color="tab:green", label="page JS heap")
        a2.set_ylabel("MB")
        a2.set_xlabel("minutes")
        a2.legend()
        a2.grid(True, alpha=0.3)
        fig.tight_layout()
        path = RESULTS / f"soak_rss-{results['mode']}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(str(path))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the < 2 minute subset")
    parser.add_argument("--only", choices=SECTIONS, help="run one section")
    parser.add_argument(
        "--period",
        type=float,
        default=0.1,
        help="simulator period (s) for the browser and soak sections (default 0.1 = 10 Hz)",
    )
    parser.add_argument(
        "--soak-seconds", type=float, default=300.0, help="soak duration (full mode; default 300)"
    )
    parser.add_argument("--out", default=str(RESULTS / "results.json"))
    args = parser.parse_args()
    names = [n for n in SECTIONS if not (n == "soak" and args.quick)]
    if args.only:
        names = [args.only]
    started = time.monotonic()
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "sections": {},
        "seconds": {},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in names:
        t0 = time.monotonic()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            results["sections"][name] = run_section(name, args)
        except Exception as exc:
            traceback.print_exc()
            results["sections"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        results["seconds"][name] = round(time.monotonic() - t0, 1)
        print(f"[bench] {name} done in {results['seconds'][name]} s", file=sys.stderr, flush=True)
    results["seconds"]["total"] = round(time.monotonic() - started, 1)
    results["table"] = table(results)
    try:
        results["plots"] = plots(results)
    except Exception as exc:
        results["plots_error"] = f"{type(exc).__name__}: {exc}"
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(results["table"])
    m = results["machine"]
    print(
        f"\n{results['mode']} run, {results['seconds']['total']} s; "
        f"machine: {m.get('cpus')} CPUs, {m.get('cpu_model', '?')}; results: {args.out}"
    )


if __name__ == "__main__":
    main()
