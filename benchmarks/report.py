"""Bench result → terminal table, Markdown table, PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dfx.engine.errors import MissingDependencyError

__all__ = ["table", "markdown", "plot"]

COLUMNS = ("model", "backend", "batch", "status", "size MB", "AUC", "ACC", "ms/img p50", "img/s", "x eager",
           "e2e img/s")


def _cells(r: dict[str, Any]) -> list[str]:
    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    acc = r.get("accuracy") or {}
    reason = r.get("reason", "").split(";")[0]  # the full reason is in the JSON; the table keeps one clause
    status = r["status"] if r["status"] == "ok" else f"{r['status']}: {reason}"
    return [r["model"], r["backend"], f(r.get("batch_size"), "d"), status, f(r.get("size_mb"), ".2f"),
            f(acc.get("auc"), ".4f"), f(acc.get("acc"), ".4f"), f(r.get("ms_per_image_p50"), ".3f"),
            f(r.get("images_per_s"), ".1f"), f(r.get("speedup_vs_eager"), ".2f"), f(r.get("e2e_images_per_s"), ".1f")]


def _header(result: dict[str, Any]) -> str:
    env = result["environment"]
    gpus = ", ".join(env["gpus"]) or "none"
    return (f"CPU: {env['cpu']} ({env['cores']} cores, {env['physical_cores']} physical); GPU: {gpus}; "
            f"data: {result['settings']['data'] or 'generated images (no accuracy)'}")


def table(result: dict[str, Any]) -> str:
    """A fixed-width table, one row per model x backend x batch size."""
    rows = [list(COLUMNS)] + [_cells(r) for r in result["rows"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS) - 1)]
    lines = [_header(result)]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    """The same table in Markdown."""
    lines = [_header(result), "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in _cells(r)) + " |" for r in result["rows"]]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: str | Path) -> Path:
    """Throughput vs batch size per backend (one panel per model) and ROC curves when data was given."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise MissingDependencyError("matplotlib", "bench") from e
    ok = [r for r in result["rows"] if r["status"] == "ok"]
    models = sorted({r["model"] for r in ok})
    panels = len(models) + (1 if result.get("roc") else 0)
    fig, axes = plt.subplots(1, max(panels, 1), figsize=(4.5 * max(panels, 1), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        for key in sorted({(r["backend"], r["kind"]) for r in ok if r["model"] == model}):
            pts = sorted((r["batch_size"], r["images_per_s"]) for r in ok
                         if r["model"] == model and (r["backend"], r["kind"]) == key)
            ax.plot(*zip(*pts), marker="o", label=f"{key[0]} ({key[1]})")
        ax.set(title=model, xlabel="batch size", ylabel="images/s (compute only)", xscale="log")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if result.get("roc"):
        ax = axes[0][-1]
        for name, c in sorted(result["roc"].items()):
            ax.plot(c["fpr"], c["tpr"], label=name.replace("|", " / "))
        ax.plot([0, 1], [0, 1], ls=":", c="grey")
        ax.set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
        ax.legend(fontsize=7)
    fig.suptitle(_header(result), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
