"""The monitor's Trend card: page time from clicking "24 h" (or "1 h") to the drawn trend.

    python benchmarks/trend_page.py                  # 1 patient x 24 h, 20 clicks
    python benchmarks/trend_page.py --patients 64    # the 24 h x 64 patients file (11 M rows)
    python benchmarks/trend_page.py --db PATH        # an existing history file (the bridge
                                                     # records into it while measuring)

A history file is seeded with ``benchmarks/history_seed.py`` (N patients x H hours at 2 Hz ending
now, its default holes), then ``python app.py`` runs over it (``HRDASH_DB``, the simulator with
the same N patients, so the ids match and the measured patient is live too) on fresh ports, and
``/patient/bed-01`` opens in headless Chromium at 1920x1080. After the first trend is drawn, the
range buttons are clicked (a real mouse click, Playwright) alternately "24 h" and "1 h",
``--clicks`` times in all, one at a time. Each click is timed in the page, on its monotonic clock:

* *click → drawn*: from the click event's ``timeStamp`` to the moment the card's ``data-drawn``
  count goes up with the new range (assets/trend.js sets it when ``Plotly.react``'s promise
  resolves: the trend fetched, parsed, the figure built and Plotly done);
* *click → next frame*: from the click to the start of the next animation frame after that (a
  paint cannot come sooner);
* *fetch*: the trend request's Resource Timing (``startTime`` → ``responseEnd``), and its
  ``encodedBodySize``: the Dash server's part (the history query) plus the transfer.

Goal (issue 9): click → drawn ≤ 500 ms for "24 h". Results: a markdown table on stdout and
``benchmarks/results/results-trend-page.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, machine, summary  # noqa: E402
from benchmarks.history_seed import seed  # noqa: E402
from hrdash import ids  # noqa: E402
from tests.support import app_command, chromium_page, start_hrdash, stop  # noqa: E402

PATIENT = "bed-01"
WIDTH, HEIGHT = 1920, 1080
RANGES = ("24h", "1h")  # clicked alternately, "24 h" first

# Before a click: a promise that resolves with the click's timings once the card has drawn the
# range (data-drawn up, data-range the one clicked) and the next animation frame has started.
ARM_JS = f"""(range) => {{
    const card = document.getElementById('{ids.TREND_CARD}');
    const before = Number(card.dataset.drawn);
    performance.clearResourceTimings();
    window.__trendClick = new Promise((resolve) => {{
        let clickAt = null;
        document.addEventListener('click', (ev) => {{ clickAt = ev.timeStamp; }},
            {{capture: true, once: true}});
        const done = () => {{
            const drawnAt = performance.now();
            requestAnimationFrame(() => {{
                const frameAt = performance.now();
                const res = performance.getEntriesByType('resource')
                    .filter((e) => e.name.includes('/trend?'));
                const r = res.length ? res[res.length - 1] : null;
                resolve({{
                    drawn: drawnAt - clickAt, frame: frameAt - clickAt,
                    fetch: r ? r.responseEnd - r.startTime : null,
                    bytes: r ? r.encodedBodySize : null,
                    points: Number(card.dataset.points), width: Number(card.dataset.width),
                }});
            }});
        }};
        const obs = new MutationObserver(() => {{
            if (Number(card.dataset.drawn) > before && card.dataset.range === range) {{
                obs.disconnect();
                done();
            }}
        }});
        obs.observe(card, {{attributes: true}});
    }});
}}"""


def measure(url: str, clicks: int) -> dict[str, list[dict[str, Any]]]:
    """Click the ranges alternately ``clicks`` times on the monitor at ``url``; the timings of
    each click, by range."""
    out: dict[str, list[dict[str, Any]]] = {r: [] for r in RANGES}
    with chromium_page(WIDTH, HEIGHT) as page:
        page.goto(url)
        page.wait_for_function(
            f"() => Number(document.getElementById('{ids.TREND_CARD}')?.dataset.drawn) > 0",
            timeout=60_000,
        )
        for i in range(clicks):
            range_ = RANGES[i % len(RANGES)]
            page.evaluate(ARM_JS, range_)
            page.click(f"#{ids.TREND_RANGES} [data-range='{range_}']")
            out[range_].append(page.evaluate("window.__trendClick"))
            page.wait_for_timeout(300)  # let the browser settle between clicks
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1, help="patients seeded (default 1)")
    parser.add_argument("--hours", type=float, default=24.0, help="hours seeded (default 24)")
    parser.add_argument("--clicks", type=int, default=20, help="clicks in all (default 20)")
    parser.add_argument("--db", type=Path, help="an existing history file instead of seeding")
    parser.add_argument("--out", type=Path, default=RESULTS / "results-trend-page.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hrdash-trend-") as tmp:
        if args.db is None:
            info = seed(Path(tmp) / "history.db", patients=args.patients, hours=args.hours)
            print(
                f"seeded {info['readings']:,} readings of {info['patients']} patients x "
                f"{info['hours']:g} h in {info['seconds']:.1f} s ({info['bytes'] / 2**20:.0f} MB)",
                file=sys.stderr,
            )
            db = Path(info["path"])
        else:
            info = {"path": str(args.db)}
            db = args.db
        env = {"HRDASH_DB": str(db), "HRDASH_SIMULATOR_PATIENTS": str(args.patients)}
        running = start_hrdash(app_command(), env)
        try:
            time.sleep(2.0)  # the bridge's first readings; the app settles
            samples = measure(f"{running.url}patient/{PATIENT}", args.clicks)
        finally:
            stop(running)

    result: dict[str, Any] = {
        "section": "trend_page",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "history": {k: v for k, v in info.items() if k not in ("ids", "path")},
        "clicks": args.clicks,
        "samples": samples,
        "summary": {
            r: {
                key: summary([s[key] for s in samples[r] if s[key] is not None])
                for key in ("drawn", "frame", "fetch")
            }
            for r in RANGES
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n**Trend card** ({args.patients} patients x {args.hours:g} h seeded, {PATIENT}):\n")
    print(
        "| range | clicks | points | JSON bytes | click → drawn p50 / p99 (ms) |"
        " click → next frame p50 / p99 | fetch p50 / p99 |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in RANGES:
        s = result["summary"][r]
        last = samples[r][-1] if samples[r] else {}
        print(
            f"| {r} | {len(samples[r])} | {last.get('points')} | {last.get('bytes')} | "
            + " | ".join(
                f"{s[k]['p50']:.0f} / {s[k]['p99']:.0f}" if s[k]["n"] else "-"
                for k in ("drawn", "frame", "fetch")
            )
            + " |"
        )
    print(f"\nraw samples: {args.out}")


if __name__ == "__main__":
    main()
