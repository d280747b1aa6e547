"""Reports for people: self-contained HTML (plots embedded as base64 PNG) plus the data as CSV and Parquet.

``errors_report``, ``satisfaction_report`` and ``experiments_report`` take records already read
from their topics (the CLI reads them) and write ``<name>.html``, ``<name>*.csv`` and
``<name>*.parquet`` into a folder. Each report says what to look at first, and why.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from schemas.records import ExperimentDecision, Insight, Outcome
from sinks.experiment_report import experiment_history, experiment_report, plot_experiment

_KPIS = ("thumbs_up_rate", "mean_rating", "nps", "task_completion", "edit_rate", "delete_rate", "dwell_s")


@dataclass
class Section:
    """One part of a report: a heading, a sentence on what to look at, plots and tables."""

    heading: str
    text: str
    images: list[bytes] = field(default_factory=list)
    tables: list[pd.DataFrame] = field(default_factory=list)


def render_html(title: str, summary: str, sections: Sequence[Section]) -> str:
    """One HTML page with every image inline (``data:image/png;base64``): it opens anywhere, offline.

    >>> page = render_html("t", "s", [Section("h", "x", [b"\\x89PNG"])])
    >>> "data:image/png;base64,iVBORw==" in page and page.startswith("<!DOCTYPE html>")
    True
    """
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}"
             "th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.5em 0}"
             ".what{background:#fffbe6;padding:.5em 1em;border-left:4px solid #f0c000}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p class='what'>{html.escape(summary)}</p>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2><p>{html.escape(section.text)}</p>")
        for png in section.images:
            parts.append(f"<img alt='{html.escape(section.heading)}' "
                         f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
        for table in section.tables:
            parts.append(table.to_html(index=False, border=0, na_rep="", max_rows=60))
    parts.append("</body></html>")
    return "".join(parts)


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(10, 4))


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def _empty_png(message: str) -> bytes:
    fig, ax = _figure()
    ax.text(0.5, 0.5, message, ha="center", va="center")
    ax.set_axis_off()
    return _png(fig)


def _write(out_dir: Path, name: str, page: str, frames: dict[str, pd.DataFrame]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    for suffix, frame in frames.items():
        frame.to_csv(out_dir / f"{name}{suffix}.csv", index=False)
        frame.to_parquet(out_dir / f"{name}{suffix}.parquet", index=False)
    path = out_dir / f"{name}.html"
    path.write_text(page, encoding="utf-8")
    return path


def insight_frame(insights: Sequence[Insight], kind: str) -> pd.DataFrame:
    """Insights of one kind as rows: their fields and every evidence entry as a column."""
    rows = [{"time": pd.to_datetime(i.ts_ms, unit="ms", utc=True), "ts_ms": i.ts_ms, "subject": i.subject,
             "title": i.title, "severity": str(i.severity), "recommendation": i.recommendation or "",
             **dict(i.evidence)} for i in insights if i.kind == kind]
    return pd.DataFrame(rows)


def errors_report(insights: Sequence[Insight], out_dir: Path) -> Path:
    """Error patterns over time, by class, with their recommendations and the error reduction."""
    patterns, summary = insight_frame(insights, "error_pattern"), insight_frame(insights, "error_summary")
    sections = []
    if patterns.empty:
        sections.append(Section("Error patterns", "No error pattern was published in this period.",
                                [_empty_png("no error patterns")]))
    else:
        patterns["lines"] = patterns["lines"].astype(int)
        fig, ax = _figure()
        for subject, rows in patterns.groupby("subject", sort=True):
            ax.plot(rows["time"], rows["lines"], marker="o", label=f"{subject} [{rows['class'].iloc[-1]}]")
        ax.set_ylabel("lines per report period")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        by_class = patterns.groupby("class")["lines"].sum().sort_values()
        fig2, ax2 = _figure()
        ax2.barh(by_class.index.astype(str), by_class.values)
        ax2.set_xlabel("error lines")
        latest = patterns.sort_values("ts_ms").groupby("subject").tail(1).sort_values("lines", ascending=False)
        cols = [c for c in ("subject", "class", "lines", "trend", "template", "by_route", "by_workflow",
                            "recommendation") if c in latest]
        sections.append(Section("Patterns over time", "Each line is one mined template; a rising or new one is "
                                "where to look first.", [_png(fig)]))
        sections.append(Section("By error class", "Which kinds of failure cost the most lines.", [_png(fig2)]))
        sections.append(Section("Latest state and what to do", "Most frequent first; each row carries its "
                                "recommendation and where its lines come from.", tables=[latest[cols]]))
    if not summary.empty:
        summary["error_reduction"] = summary["error_reduction"].astype(float)
        fig3, ax3 = _figure()
        ax3.plot(summary["time"], summary["lines"].astype(int), marker="o")
        ax3.set_ylabel("error lines per period")
        sections.append(Section("Error reduction", "All error lines, period over period (error_reduction is the "
                                "share fewer than the period before).", [_png(fig3)],
                                [summary[["time", "lines", "previous_lines", "error_reduction"]]]))
    page = render_html("loopwise — error patterns", _lead(patterns, "error patterns"), sections)
    return _write(out_dir, "errors", page, {"": patterns.astype(str), "_summary": summary.astype(str)})


def kpi_frame(outcomes: Sequence[Outcome], bucket: str = "1h") -> pd.DataFrame:
    """Satisfaction KPIs per workflow and time bucket (request time) from final outcomes."""
    rows = [{"time": pd.to_datetime(o.request_ts_ms, unit="ms", utc=True), "workflow": o.workflow,
             "thumbs": o.thumbs, "rating": o.rating, "nps": o.nps, "task_completed": o.task_completed,
             "edited": 0.0 if o.edited is None else 1.0, "deleted": 1.0 if o.deleted else 0.0, "dwell_s": o.dwell_s}
            for o in outcomes if o.is_final]
    if not rows:
        return pd.DataFrame(columns=["time", "workflow", "outcomes", *_KPIS])
    frame = pd.DataFrame(rows)
    frame["nps"] = frame["nps"].map(lambda v: None if pd.isna(v) else (100.0 if v >= 9 else -100.0 if v <= 6 else 0.0))
    grouped = frame.groupby(["workflow", pd.Grouper(key="time", freq=bucket)])
    out = grouped.agg(outcomes=("edited", "size"), thumbs_up_rate=("thumbs", "mean"), mean_rating=("rating", "mean"),
                      nps=("nps", "mean"), task_completion=("task_completed", "mean"), edit_rate=("edited", "mean"),
                      delete_rate=("deleted", "mean"), dwell_s=("dwell_s", "mean"))
    return out.reset_index()


def satisfaction_report(insights: Sequence[Insight], outcomes: Sequence[Outcome], out_dir: Path,
                        bucket: str = "1h") -> Path:
    """KPIs over time per workflow, the drops found and their ranked causes."""
    kpis = kpi_frame(outcomes, bucket)
    causes = insight_frame(insights, "root_cause")
    sections = []
    for name, title in (("thumbs_up_rate", "Thumbs-up rate"), ("task_completion", "Task completion"),
                        ("mean_rating", "Mean rating"), ("nps", "NPS")):
        fig, ax = _figure()
        for workflow, rows in kpis.groupby("workflow", sort=True):
            ax.plot(rows["time"], rows[name], marker=".", label=str(workflow))
        for ts in causes["time"] if not causes.empty else []:
            ax.axvline(ts, color="red", linestyle="--", linewidth=1)
        ax.set_ylabel(name)
        if not kpis.empty:
            ax.legend(fontsize=8)
        sections.append(Section(title, f"{title} per workflow per {bucket} of request time; red lines mark "
                                "detected drops.", [_png(fig) if not kpis.empty else _empty_png("no final outcomes")]))
    if not causes.empty:
        cols = [c for c in ("time", "subject", "kpi", "before", "after", "cause_1", "cause_2", "cause_3",
                            "recommendation") if c in causes]
        sections.insert(0, Section("Drops and their root causes", "Each drop with its causes ranked by how much "
                                   "more of it they explain than their traffic share; act on cause_1.",
                                   tables=[causes[cols]]))
    sections.append(Section("KPI table", "The numbers behind the plots.", tables=[kpis]))
    lead = (f"{len(causes)} satisfaction drop(s) found; the first table says which dimension and value explain each."
            if not causes.empty else "No satisfaction drop was detected in this period; the plots show the KPIs.")
    page = render_html("loopwise — satisfaction", lead, sections)
    return _write(out_dir, "satisfaction", page, {"": kpis.astype(str), "_causes": causes.astype(str)})


def experiments_report(decisions: Sequence[ExperimentDecision], out_dir: Path) -> Path:
    """Per experiment: arms' estimates and traffic over time, and the latest decision."""
    history, report = experiment_history(decisions), experiment_report(decisions)
    sections = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in sorted(history["experiment"].unique().tolist()):
        own = [d for d in decisions if d.experiment == name]
        path = plot_experiment(own, out_dir / f".{name}.png")
        png = path.read_bytes()
        path.unlink()
        sections.append(Section(f"Experiment {name}", "Mean and 95 % interval per variant (top), traffic share "
                                "(bottom); the dashed line is the decision.", [png],
                                [report[report["experiment"] == name]]))
    if not sections:
        sections.append(Section("Experiments", "No experiment decision was published in this period.",
                                [_empty_png("no experiment decisions")]))
    winners = report.dropna(subset=["winner"])["winner"].unique().tolist() if not report.empty else []
    lead = (f"{report['experiment'].nunique() if not report.empty else 0} experiment(s); "
            f"winners declared: {', '.join(map(str, winners)) or 'none yet'}.")
    page = render_html("loopwise — experiments", lead, sections)
    return _write(out_dir, "experiments", page, {"": report.astype(str), "_history": history.astype(str)})


def _lead(patterns: pd.DataFrame, what: str) -> str:
    if patterns.empty:
        return f"No {what} in this period."
    latest = patterns.sort_values("ts_ms").groupby("subject").tail(1).sort_values("lines", ascending=False)
    top = latest.iloc[0]
    return (f"{latest['subject'].nunique()} {what}; look first at {top['subject']} ({top['class']}, "
            f"{top['lines']} lines last period): {top['recommendation']}.")
