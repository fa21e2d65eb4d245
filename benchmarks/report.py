"""Bench result → terminal table, Markdown table, PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dfx.engine.errors import MissingDependencyError

__all__ = ["table", "markdown", "plot", "figure", "save_result", "KIND_LABELS"]

# artifact kind (bench.py) → what the table and plot call it
KIND_LABELS = {"checkpoint": "torch fp32", "onnx": "fp32", "onnx-fp16": "fp16", "onnx-int8": "int8",
               "engine": "engine"}
# one colour per backend and one line style per kind, the same in every panel
_COLOURS = {"pytorch-eager": "tab:grey", "pytorch-eager-cuda": "tab:brown", "onnxruntime-cpu": "tab:blue",
            "onnxruntime-cuda": "tab:green", "tensorrt": "tab:red"}
_STYLES = {"checkpoint": ":", "onnx": "-", "onnx-fp16": "--", "onnx-int8": "-.", "engine": "-"}


def save_result(out: Path, result: dict[str, Any], markdown_text: str) -> None:
    """Writes a benchmark's result as ``OUT.json`` and its table as ``OUT.md`` (folders made as needed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown_text)


COLUMNS = ("model", "backend", "kind", "batch", "status", "size MB", "AUC", "ACC", "ms/img p50", "img/s", "x eager",
           "e2e img/s")


def _cells(r: dict[str, Any]) -> list[str]:
    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    acc = r.get("accuracy") or {}
    reason = r.get("reason", "").split(";")[0]  # the full reason is in the JSON; the table keeps one clause
    status = r["status"] if r["status"] == "ok" else f"{r['status']}: {reason}"
    return [r["model"], r["backend"], KIND_LABELS.get(r.get("kind"), r.get("kind") or "-"), f(r.get("batch_size"), "d"),
            status, f(r.get("size_mb"), ".2f"),
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


def figure(result: dict[str, Any]) -> Any:
    """The bench plot as a matplotlib figure: throughput against the real batch sizes (log–log, one panel per
    model, one colour per backend, one line style per artifact kind) and the ROC curves with their AUC."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise MissingDependencyError("matplotlib", "bench") from e
    import textwrap

    from matplotlib.ticker import FuncFormatter, LogLocator

    ok = [r for r in result["rows"] if r["status"] == "ok"]
    models = sorted({r["model"] for r in ok})
    roc = result.get("roc") or {}
    n = len(models) + (1 if roc else 0) or 1
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows + 1.2), squeeze=False)
    sizes = sorted({r["batch_size"] for r in ok})
    handles: dict[str, Any] = {}
    for ax, model in zip(axes.flat, models):
        for backend, kind in sorted({(r["backend"], r["kind"]) for r in ok if r["model"] == model}):
            pts = sorted((r["batch_size"], r["images_per_s"]) for r in ok
                         if r["model"] == model and (r["backend"], r["kind"]) == (backend, kind))
            label = f"{backend} ({KIND_LABELS.get(kind, kind)})"
            (line,) = ax.plot(*zip(*pts), marker="o", color=_COLOURS.get(backend), linestyle=_STYLES.get(kind, "-"),
                              label=label)
            handles.setdefault(label, line)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.minorticks_off()
        # plain numbers at 1-2-3-5 steps: a log axis with only powers of ten labelled reads as one label
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set(title=textwrap.shorten(model, 40), xlabel="batch size", ylabel="images/s (compute only)")
        ax.grid(alpha=0.3, which="both")
    if roc:
        ax = axes.flat[len(models)]
        auc = {f"{r['model']}|{r['backend']}": (r.get("accuracy") or {}).get("auc") for r in ok}
        drawn: list[tuple[Any, list[str]]] = []  # identical curves share one line and one legend entry
        for name, c in sorted(roc.items()):
            same = next((names for curve, names in drawn if curve == (c["fpr"], c["tpr"])), None)
            if same is not None:
                same.append(name)
            else:
                drawn.append(((c["fpr"], c["tpr"]), [name]))
        for (fpr, tpr), names in drawn:
            a = auc.get(names[0])
            label = " = ".join(x.replace("|", " / ") for x in names) + (f" (AUC {a:.3f})" if a is not None else "")
            ax.plot(fpr, tpr, label=textwrap.fill(label, 60))
        ax.plot([0, 1], [0, 1], ls=":", c="grey")
        ax.set(title="ROC", xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2))  # under the axes: covers no curve
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if handles:  # one legend for all throughput panels, under them, so it covers no curve
        fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(3, len(handles)), fontsize=8,
                   frameon=False)
    fig.suptitle(textwrap.fill(_header(result), 140), fontsize=8)
    fig.tight_layout(rect=(0, 0.08 if handles else 0, 1, 0.95))
    return fig


def plot(result: dict[str, Any], path: str | Path) -> Path:
    """Writes :func:`figure` as a PNG."""
    import matplotlib.pyplot as plt

    fig = figure(result)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
