"""`make bench`: every benchmark on one throwaway cluster (fsync on), then a summary table.

Each figure is printed beside the raw limit measured in the same run on the same machine, so the
ratio holds even where the absolute numbers move with the machine and its load.
"""

from __future__ import annotations

import os
import time

from bench import audit, capture, drafting, dsar, funnel, intake, outreach, retention, routing
from bench.common import Figure, cluster, heading, machine_info, rate, start_watchdog, table

BUDGET_SECONDS = 290  # `make bench` must end by itself in under 5 minutes


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def summary(figures: list[Figure]) -> str:
    rows = []
    for figure in figures:
        target = "—" if figure.target_ratio is None else f"≥ {figure.target_ratio:.0%}"
        met = {None: "—", True: "yes", False: "NO"}[figure.met]
        rows.append(
            [
                figure.name,
                f"{rate(figure.value)} {figure.unit}",
                figure.raw_name,
                f"{rate(figure.raw_value)} {figure.unit}",
                f"{figure.ratio:.1%}",
                target,
                met,
                f"{figure.foreign_load:.2f} / {figure.io_stall:.0%}",
            ]
        )
    headers = [
        "figure",
        "value",
        "raw limit",
        "raw",
        "ratio",
        "target",
        "met?",
        "foreign CPU / io stall",
    ]
    return table(headers, rows)


def main() -> None:
    started = time.monotonic()
    watchdog = start_watchdog(BUDGET_SECONDS)
    try:
        print("LeadRelay benchmarks: each figure beside the raw limit measured in the same run")
        with cluster(fast_unsafe=False) as c:
            for name, value in machine_info(c):
                print(f"  {name:<11} {value}")
            print(f"  {'load':<11} {load_average()} at start")
            figures = intake.run(c)
            figures += audit.run(c)
            # 20k rows here to stay in budget; `python -m bench.capture --rows 100000` for more.
            figures += capture.run(c, rows=20_000)
            # 10k leads here to stay in budget (the simulator then reads 10k open assignments;
            # its latency grows with them): `python -m bench.routing` routes 20,000.
            figures += routing.run(c, leads=10_000)
            # Pure CPU, no database: 1,000 leads and a 6 s section budget keep it near 10 s;
            # `python -m bench.drafting` drafts 2,000 leads in 3 rounds.
            figures += drafting.run(leads=1_000, rounds=3, budget=6.0)
            # Up to 600 messages per path in blocks of 50, no new block after 8 s of measuring
            # (≈ 20 s with setup and warm-up on a busy machine); `python -m bench.outreach`
            # sends up to 2,000 in blocks of 100 within 100 s.
            figures += outreach.run(c, messages=600, block=50, budget=8.0)
            # 50k messages here to stay in budget (setup is COPY from Python); the target is
            # at 1M: `python -m bench.funnel` generates 1,000,000.
            figures += funnel.run(c, messages=50_000, runs=3)
            # 20k old messages, one round per path here to stay in budget; the target is at
            # 1M: `python -m bench.retention` purges 1,000,000 twice per path.
            figures += retention.run(c, messages=20_000, rounds=1)
            # 20k leads here to stay in budget (setup is COPY from Python); the target is at
            # 1M: `python -m bench.dsar` erases among 1,000,000. `python -m bench.telemetry`
            # (delivery webhooks) runs on its own: its four 10 s phases do not fit here.
            figures += dsar.run(c, leads=20_000, runs=3)
        heading("summary")
        print(summary(figures))
        for figure in figures:
            if figure.notes:
                print(f"  {figure.name}: " + "; ".join(figure.notes))
        print(
            "foreign CPU: cores used by processes outside the benchmark while it measured; "
            "io stall: share of that time some task waited for the disk (our own commits "
            "cause some). Worst phase behind each figure. Well above zero, the machine was "
            "shared and the figures are pessimistic: run again."
        )
        print(f"{load_average()} at the end; {time.monotonic() - started:.0f}s in all.")
    finally:
        watchdog.cancel()


if __name__ == "__main__":
    main()
