"""The report as a document: one list of blocks (`Document`), rendered as Markdown and as self-contained HTML;
`render` lays out a report's summary into it.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from pipelines import stats
from pipelines.hub import run_caveat
from pipelines.report_runs import TABLE_KEY, Run


class Document:
    def __init__(self):
        self.blocks: list[tuple] = []

    def heading(self, text: str, level: int = 2):
        self.blocks.append(("heading", level, text))

    def paragraph(self, text: str):
        self.blocks.append(("paragraph", text))

    def table(self, header: list[str], rows: list[list]):
        self.blocks.append(("table", header, rows))

    def image(self, filename: str, caption: str):
        self.blocks.append(("image", filename, caption))

    def markdown(self) -> str:
        out = []
        for kind, *rest in self.blocks:
            if kind == "heading":
                out.append("#" * rest[0] + " " + rest[1])
            elif kind == "paragraph":
                out.append(rest[0])
            elif kind == "table":
                header, rows = rest
                cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
                out.append(
                    "\n".join(
                        ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
                        + ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
                    )
                )
            elif kind == "image":
                out.append(f"![{rest[1]}]({rest[0]})")
        return "\n\n".join(out) + "\n"

    def html(self, folder: Path, title: str) -> str:
        """Images are embedded (base64), so the one file can be mailed or attached on its own."""
        body = []
        for kind, *rest in self.blocks:
            if kind == "heading":
                body.append(f"<h{rest[0]}>{html.escape(rest[1])}</h{rest[0]}>")
            elif kind == "paragraph":
                text = html.escape(rest[0])
                text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)  # the Markdown the paragraphs use: **bold**, `code`
                text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
                body.append(f"<p>{text}</p>")
            elif kind == "table":
                header, rows = rest
                head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
                lines = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>")
            elif kind == "image":
                data = base64.b64encode((folder / rest[0]).read_bytes()).decode("ascii")
                body.append(
                    f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(rest[1])}">'
                    f"<figcaption>{html.escape(rest[1])}</figcaption></figure>"
                )
        style = (
            "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
            "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:4px 8px;"
            "text-align:left;vertical-align:top}th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3}"
            "figcaption{color:#666;font-size:0.9em}"
        )
        return (
            f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{style}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
        )


def decimals(value: float) -> int:
    """Digits after the point: 4 for scores below 10 (accuracy 0.8123), 2 up to 1000 (EM 81.23), 0 above."""
    return 0 if abs(value) >= 1000 else 2 if abs(value) >= 10 else 4


def fmt(value, digits: int | None = None) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if not isinstance(value, float):
        return str(value)
    return f"{value:,.{decimals(value) if digits is None else digits}f}"


def fmt_mean_std(m: dict | None) -> str:
    """'0.8123 ± 0.0040', the std with the mean's digits; the mean alone for one seed."""
    if m is None:
        return "—"
    digits = decimals(float(m["mean"]))
    return fmt(float(m["mean"]), digits) + ("" if m["std"] is None else f" ± {fmt(m['std'], digits)}")


def fmt_parameters(run: Run) -> str:
    total = run.info.get("parameters", {}).get("total")
    return f"{total / 1e6:.2f}M" if total else "—"


def render(summary: dict, arms: dict[str, list[Run]], metrics: dict, plots: list[tuple[str, str]]) -> Document:
    doc = Document()
    baseline = summary["baseline"]
    doc.heading(summary["title"], 1)
    doc.paragraph(
        f"{len(summary['runs'])} runs in {len(arms)} arms; baseline **{baseline}**. Generated {summary['created']}."
    )
    for note in summary["notes"]:
        doc.paragraph(f"Note: {note}")

    doc.heading("Runs")
    doc.table(
        ["arm", "seed", "run", "model", "job type", "parameters", "source"],
        [
            [
                r.arm,
                fmt(r.seed),
                r.name,
                r.info.get("model", "—"),
                r.info.get("job_type") or "—",
                fmt_parameters(r),
                r.source,
            ]
            for members in arms.values()
            for r in members
        ],
    )
    for arm, members in arms.items():
        caveat = run_caveat(members[0].info)
        if caveat:
            doc.paragraph(f"Caveat ({arm}): {caveat}")

    doc.heading("Final metrics (mean ± std over seeds)")
    keys = [k for k in dict.fromkeys(k for m in metrics.values() for k in m) if TABLE_KEY.match(k)]
    # Quality first, then losses, then cost (runtime, throughput); the order within each kind is the runs' own.
    keys.sort(key=lambda k: 2 if k.startswith("train_") and not k.endswith("loss") else 1 if k.endswith("loss") else 0)
    doc.table(
        ["arm", "seeds", *keys],
        [[arm, len(members), *(fmt_mean_std(metrics[arm].get(k)) for k in keys)] for arm, members in arms.items()],
    )

    if summary["comparisons"]:
        doc.heading("Differences against the baseline")
        doc.paragraph(
            "Difference = arm − baseline of the per-example score, seeds averaged per example, "
            "on the examples every run "
            "scored. 95% interval and p-value from a paired bootstrap over examples "
            f"({summary['bootstrap_resamples']} resamples). "
            "An interval that excludes 0 is a difference the evaluation set can resolve."
        )
        rows = []
        for c in summary["comparisons"]:
            for score, d in c["differences"].items():
                rows.append(
                    [
                        f"{c['arm']} − {c['baseline']}",
                        c["split"],
                        score,
                        fmt(d["baseline_mean"]),
                        fmt(d["other_mean"]),
                        fmt(d["difference"]),
                        f"[{fmt(d['ci_low'])}, {fmt(d['ci_high'])}]",
                        stats.format_p(d["p_value"]),
                        fmt(c["n_examples"]),
                    ]
                )
        doc.table(
            ["comparison", "split", "score", "baseline", "arm", "difference", "95% CI", "p (bootstrap)", "examples"],
            rows,
        )

        doc.heading("McNemar's test on per-example correctness, per seed pair")
        doc.paragraph(
            "b: baseline right, arm wrong; c: arm right, baseline wrong. Exact binomial test below 25 "
            "disagreements, chi-square with continuity correction above."
        )
        doc.table(
            ["comparison", "split", "seeds", "b", "c", "χ²", "p", "method"],
            [
                [
                    f"{c['arm']} vs {c['baseline']}",
                    c["split"],
                    " / ".join(map(str, t["seeds"])),
                    t["baseline_only"],
                    t["other_only"],
                    f"{t['statistic']:.3f}",
                    stats.format_p(t["p_value"]),
                    t["method"],
                ]
                for c in summary["comparisons"]
                for t in c["mcnemar"]
            ],
        )

    if plots:
        doc.heading("Plots")
        for filename, caption in plots:
            doc.image(filename, caption)

    if summary["comparisons"]:
        render_examples(doc, summary["comparisons"])
    return doc


def render_examples(doc: Document, comparisons: list[dict]) -> None:
    doc.heading("Examples one arm gets right and the other wrong")
    doc.paragraph("Right (or wrong) in every seed of the arm. Predictions are listed per seed, separated by ' / '.")
    for c in comparisons:
        for direction, (right, wrong) in (
            ("baseline_right_arm_wrong", (c["baseline"], c["arm"])),
            ("arm_right_baseline_wrong", (c["arm"], c["baseline"])),
        ):
            examples = c["examples"][direction]
            doc.heading(f"{c['split']}: {right} right, {wrong} wrong ({examples['count']} examples)", 3)
            if examples["shown"]:
                doc.table(
                    ["example", "text", "gold", f"{c['baseline']} predicted", f"{c['arm']} predicted"],
                    [
                        [
                            e["key"],
                            e["text"] or "—",
                            e["gold"],
                            " / ".join(e["baseline_predicted"]),
                            " / ".join(e["arm_predicted"]),
                        ]
                        for e in examples["shown"]
                    ],
                )
