"""Leave-one-source-out evaluation: how a training recipe does on a kind of fake it has not seen.

For each data set given, trains on the others (their ``train/`` splits) and scores the held-out set's
``validate/`` split: AUC and EER (threshold-free), and accuracy at the model's own threshold (chosen on its own
validation data, as in deployment). The table names the recipe, so every recipe change can be reported
against it. Run from the repository root::

    python -m dfx.benchmarks.leave_one_out --data ../shared/data/mesonet-deepfake ../shared/data/stylegan2-ffhq \\
        ../shared/data/ciplab-photoshop --model meso4 --epochs 15 --out benchmarks/results/loso-meso4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["leave_one_out"]


def leave_one_out(data: list[Path], model: str, epochs: int, runs: Path, held_out: list[str] | None = None,
                  **recipe: Any) -> dict[str, Any]:
    """Trains one model per held-out data set and scores that set; returns the table as a dict.

    ``held_out`` names the sets to hold out (by folder name; default: each in turn), e.g. to repeat one row with
    another seed.
    """
    from dfx.engine import metrics as M
    from dfx.engine.inputs import VAL_NAMES, child_dir, labelled_images, source_name
    from dfx.training.checkpoint import load_checkpoint
    from dfx.training.trainer import TrainConfig, predict, train

    if len(data) < 2:
        raise SystemExit("leave-one-out needs at least two data sets")
    names = [source_name(d) for d in data]
    unknown = sorted(set(held_out or ()) - set(names))
    if unknown:
        raise SystemExit(f"--held-out {', '.join(unknown)}: not among the data sets ({', '.join(names)})")
    rows = {}
    for held in data:
        name = source_name(held)
        if held_out and name not in held_out:
            continue
        out = runs / f"without-{name}"
        cfg = TrainConfig(model=model, data=[str(d) for d in data if d != held], out=str(out), epochs=epochs,
                          pretrained=False, **recipe)
        train(cfg, overwrite=True)
        net, info = load_checkpoint(out / "best.safetensors")
        items = labelled_images(child_dir(held, VAL_NAMES) or held)
        labels = np.array([y for _, y in items])
        scores = predict(net, [p for p, _ in items], info.spec, workers=cfg.workers or 0,
                         temperature=info.temperature)  # the artifact's threshold is on its calibrated scale
        m = M.summarize(labels, scores, info.threshold)
        rows[name] = {"trained_on": [source_name(d) for d in data if d != held], "n": m["n"], "auc": m["auc"],
                      "eer": m["eer"], "acc_at_model_threshold": m["acc"], "threshold": info.threshold,
                      "run": str(out)}
    return {"recipe": {"model": model, "epochs": epochs, **recipe}, "held_out": rows}


def _markdown(result: dict[str, Any], machine: str) -> str:
    recipe = ", ".join(f"{k}={v}" for k, v in result["recipe"].items())
    lines = [f"Recipe: {recipe}. Machine: {machine}. Each row: trained on the other sets' train/ splits, scored on "
             "the held-out set's validate/ split.", "",
             "| held-out set | trained on | images | AUC | EER | ACC at the model's threshold |",
             "|---|---|---|---|---|---|"]
    for name, r in result["held_out"].items():
        lines.append(f"| {name} | {', '.join(r['trained_on'])} | {r['n']} | {r['auc']:.3f} | {r['eer']:.3f} | "
                     f"{r['acc_at_model_threshold']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Command-line entry: writes ``OUT.json`` and ``OUT.md``; run folders go under ``--runs``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, type=Path)
    p.add_argument("--model", default="meso4")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--max-steps-per-epoch", type=int, help="cap the steps per epoch (a quick, weaker run)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--held-out", nargs="+", help="hold out only these sets (folder names); default: each in turn")
    p.add_argument("--sbi", type=float, default=0.0, help="self-blended pseudo-fakes per real image (dfx-train --sbi)")
    p.add_argument("--balance", default=None, help="dfx-train --balance (loss, sampler, source, none)")
    p.add_argument("--select", default=None, help="dfx-train --select (auc, worst-source)")
    p.add_argument("--cache", default="auto", help="dfx-train --cache (auto, ram, disk, none); always recorded")
    p.add_argument("--runs", type=Path, default=Path("runs/loso"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/loso"))
    args = p.parse_args()
    recipe = {"workers": args.workers, "cache": args.cache, "seed": args.seed}
    if args.max_steps_per_epoch:
        recipe["max_steps_per_epoch"] = args.max_steps_per_epoch
    if args.sbi:
        recipe["sbi"] = args.sbi
    for key in ("balance", "select"):
        if getattr(args, key):
            recipe[key] = getattr(args, key)
    result = leave_one_out(args.data, args.model, args.epochs, args.runs, args.held_out, **recipe)
    from dfx.benchmarks.bench import _environment

    env = _environment()
    machine = f"{env['cpu']}, {env['cores']} cores, {', '.join(env['gpus']) or 'no GPU'}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result | {"machine": machine}, indent=1))
    args.out.with_suffix(".md").write_text(_markdown(result, machine))
    print(_markdown(result, machine))


if __name__ == "__main__":
    main()
