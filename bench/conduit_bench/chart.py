"""The chart (docs/performance.png): throughput and latency, with the targets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from conduit_bench.settings import LATENCY_P99_TARGET_MS

if TYPE_CHECKING:
    from conduit_bench.runs import Result

def chart(results: list[Result], latency: dict | None, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6.2))
    x = list(range(len(results)))
    width = 0.2
    bars = [("smtp-sink accepted/s", [r.smtp_sink["accepted_per_s"] for r in results], "#bbbbbb"),
            ("bare aiosmtpd accepted/s", [r.aiosmtpd_sink["accepted_per_s"] for r in results], "#8c8c8c"),
            ("Conduit accepted/s (SMTP)", [r.accepted_per_s for r in results], "#4c72b0"),
            ("Conduit delivered/s (end to end)", [r.delivered_per_s for r in results], "#dd8452")]
    for i, (label, values, color) in enumerate(bars):
        pos = [p + (i - 1.5) * width for p in x]
        left.bar(pos, values, width, label=label, color=color)
        for px, v in zip(pos, values, strict=True):
            left.annotate(f"{v:,.0f}", (px, v), ha="center", va="bottom", fontsize=7)
    for p, r in zip(x, results, strict=True):
        if r.target_delivered_per_s:
            left.hlines(r.target_delivered_per_s, p - 2 * width, p + 2 * width, colors="red",
                        linestyles="dashed", label="end-to-end target" if p == 0 else None)
    left.set_yscale("log")
    left.set_ylim(top=max(max(v) for _, v, _ in bars) * 4)
    left.set_xticks(x, [f"{r.label}\n{r.messages:,} messages" for r in results], fontsize=8)
    left.set_ylabel("messages per second (log scale)")
    left.set_title("Throughput, 20 concurrent SMTP sessions")
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)

    groups = [(f"{r.label}\nsaturated\n(accept→receipt)", r.accept_to_receipt_ms) for r in results]
    if latency:
        groups.append((f"4 KiB at {latency['rate_per_s']:.0f}/s\n(half max)\n(end of DATA→receipt)",
                       latency["end_of_data_to_receipt_ms"]))
    gx = list(range(len(groups)))
    for i, (p, color) in enumerate((("p50", "#55a868"), ("p95", "#c4ad66"), ("p99", "#c44e52"))):
        pos = [g + (i - 1) * width for g in gx]
        values = [max(lat[p] or 0, 0.1) for _, lat in groups]
        right.bar(pos, values, width, label=p, color=color)
        for px, v in zip(pos, values, strict=True):
            right.annotate(f"{v:,.0f}", (px, v), ha="center", va="bottom", fontsize=7)
    if latency:
        last = gx[-1]
        right.hlines(LATENCY_P99_TARGET_MS, last - 1.5 * width, last + 1.5 * width, colors="red",
                     linestyles="dashed", label=f"p99 target at half of the maximum ({LATENCY_P99_TARGET_MS} ms)")
    right.set_yscale("log")
    right.set_ylim(top=max(max(lat[p] or 0 for p in ("p50", "p95", "p99")) for _, lat in groups) * 4)
    right.set_xticks(gx, [g for g, _ in groups], fontsize=8)
    right.set_ylabel("milliseconds (log scale)")
    right.set_title("Latency to the webhook")
    right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=4, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
