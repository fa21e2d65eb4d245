"""What a finished run leaves for people: ``MODEL_CARD.md`` and ``curves.png`` in the run folder.

``metrics.jsonl`` (one JSON object per finished epoch, appended) is the source of both. Its schema:

- ``epoch``: 1-based epoch number;
- ``loss``: mean training loss over the epoch's images;
- ``lr``: learning rate at the end of the epoch;
- ``images_per_s``: training throughput of the epoch;
- ``val``: validation metrics of the evaluated weights (the EMA when on) — ``n``, ``n_fake``, ``threshold`` (the
  validation EER point, P(fake)), ``acc``, ``auc``, ``ap``, ``eer``, ``eer_threshold``, ``tpr_at_fpr_1pct``,
  ``confusion`` (``tp``/``fp``/``tn``/``fn`` at ``threshold``) and, with several data sets, ``per_source``:
  the same keys per data set at the pooled threshold.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import dfx
from dfx.engine.artifact import atomic_write_text

__all__ = ["write_model_card", "plot_curves", "read_metrics", "command_line"]


def read_metrics(out: Path) -> list[dict[str, Any]]:
    """The epochs recorded in ``out/metrics.jsonl`` (a torn last line, from a crash, is ignored)."""
    path = out / "metrics.jsonl"
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def command_line() -> str:
    """How this run was started: the dfx-train command line, or a note that it came from Python."""
    if Path(sys.argv[0]).name == "dfx-train":
        return shlex.join(["dfx-train", *sys.argv[1:]])
    return "dfx.training.train(...) from Python (the settings are in config.json)"


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_model_card(out: Path, cfg: Any, spec: Any, best_epoch: int, best: dict[str, Any],
                     data: dict[str, Any]) -> Path:
    """Writes ``out/MODEL_CARD.md``: data per source, command, best epoch, validation metrics, threshold, limits."""
    sources = sorted(set(data["train"]) | set(data["val"]))
    lines = [f"# {cfg.model} — dfx model card", "",
             f"Trained with dfx {dfx.__version__} on {time.strftime('%Y-%m-%d')}:", "", "```", command_line(), "```",
             "", "Output: one logit per image; sigmoid(logit) = P(fake). Label `fake` when P(fake) ≥ the threshold.",
             "", "## Data", "", "| data set | train real | train fake | validation real | validation fake |",
             "|---|---|---|---|---|"]
    for src in sources:
        t, v = data["train"].get(src, {}), data["val"].get(src, {})
        lines.append(f"| {src} | {t.get('real', 0)} | {t.get('fake', 0)} | {v.get('real', 0)} | {v.get('fake', 0)} |")
    if data.get("skipped"):
        lines += ["", "Unreadable files skipped: " + ", ".join(f"{n} {k}" for k, n in data["skipped"].items()) + "."]
    per_source = best.get("per_source", {})
    cal = best.get("calibration")
    chosen = ("the worst data set's validation AUC" if best.get("selected_on", {}).get("select") == "worst-source"
              else "validation AUC")
    threshold = (f"threshold {cal['threshold']:.4f} on calibrated scores ({cal['policy']} policy)" if cal else
                 f"threshold {best['threshold']:.4f} (the validation equal-error point)")
    lines += ["", "## Validation", "", f"Best epoch: {best_epoch} (selected on {chosen}); {threshold}.", "",
              "| validation set | images | AUC | AP | ACC | EER | TPR at 1 % FPR | ECE before → after calibration |",
              "|---|---|---|---|---|---|---|---|"]
    for name, m in [("all", best), *per_source.items()]:
        c = cal if name == "all" else (cal or {}).get("per_source", {}).get(name)
        ece = f"{c['ece_before']:.4f} → {c['ece_after']:.4f}" if c else "–"
        lines.append(f"| {name} | {m['n']} | {_fmt(m['auc'])} | {_fmt(m['ap'])} | {_fmt(m['acc'])} | "
                     f"{_fmt(m['eer'])} | {_fmt(m['tpr_at_fpr_1pct'])} | {ece} |")
    if cal:
        lines += ["", f"Calibrated: scores are sigmoid(logit / {cal['temperature']:.3f}), fitted on the validation "
                      f"split (the split that also picked the epoch, so the figures after calibration are a little "
                      f"optimistic); log-loss {cal['nll_before']:.4f} → {cal['nll_after']:.4f}. ACC and the "
                      f"metrics above are at the pre-calibration equal-error point."]
    lines += ["", "## Preprocessing (stored in every artifact)", "",
              f"{spec.input_size[0]}×{spec.input_size[1]}, resize `{spec.resize}` ({spec.interpolation}), "
              f"mean {list(spec.mean)}, std {list(spec.std)}, channels {spec.channel_order}.", "",
              "## What it was not trained on", "",
              f"It has seen only the real and fake images of {', '.join(sources)}. Fakes made another way — other "
              "face-swap tools, face reenactment, diffusion-generated faces, heavy recompression — and images that "
              "are not face crops framed like the training data were not part of training, and its scores there "
              "mean little until measured. Treat the score as a screening signal, not proof.", "",
              "Curves per epoch: `curves.png`; numbers: `metrics.jsonl`; settings: `config.json`."]
    path = out / "MODEL_CARD.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def plot_curves(out: Path) -> Path | None:
    """Writes ``out/curves.png``: training loss, and validation AUC and EER (per data set too) per epoch."""
    rows = read_metrics(out)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ax_loss.plot(epochs, [r["loss"] for r in rows], marker="o", color="tab:blue")
    ax_loss.set(title="training loss", xlabel="epoch", ylabel="loss")
    ax_val.plot(epochs, [r["val"]["auc"] for r in rows], marker="o", color="tab:green", label="AUC (all)")
    ax_val.plot(epochs, [r["val"]["eer"] for r in rows], marker="s", color="tab:red", label="EER (all)")
    for src in sorted(rows[-1]["val"].get("per_source", {})):
        ax_val.plot(epochs, [r["val"].get("per_source", {}).get(src, {}).get("auc") for r in rows],
                    linestyle="--", label=f"AUC {src}")
    ax_val.set(title="validation", xlabel="epoch", ylim=(0, 1))
    ax_val.legend(loc="best", fontsize="small")
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    path = out / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
