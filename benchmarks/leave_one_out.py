"""Leave-one-source-out evaluation: how a training recipe does on a kind of fake it has not seen.

For each data set given, trains on the others (their ``train/`` splits) and scores the held-out set's
``validate/`` split: AUC and EER (threshold-free), and accuracy at the model's own threshold (chosen on its own
validation data, as in deployment). The table names the recipe, so every recipe change can be reported
against it. Held-out AUC moves by several hundredths with the seed alone, so a recipe is judged over seeds:
``--seed 0 1 2`` runs each and reports the mean and range per held-out set; ``--combine`` merges the results of
separate runs (one recipe, different seeds or held-out sets) into that table without training. Run from the
repository root::

    python -m dfx.benchmarks.leave_one_out --data ../shared/data/mesonet-deepfake ../shared/data/stylegan2-ffhq \\
        ../shared/data/ciplab-photoshop --model meso4 --epochs 15 --seed 0 1 2 --out benchmarks/results/loso-meso4
    python -m dfx.benchmarks.leave_one_out --combine a.json b.json --out benchmarks/results/loso-meso4-seeds
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from dfx.benchmarks.report import save_result

__all__ = ["combine_seeds", "leave_one_out"]


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


def combine_seeds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Merges results of one recipe with different seeds: per held-out set, AUC and EER per seed, mean and range.

    Args:
        results: :func:`leave_one_out` results whose recipes are equal apart from ``seed`` (a result without one
            ran with dfx-train's default seed, 0). The recipe cannot tell code versions apart: combine only runs
            of the same code.

    Returns:
        ``{"recipe", "held_out": {name: {trained_on, n, seeds, auc, eer, auc_mean, auc_min, auc_max, eer_mean}}}``.

    Raises:
        SystemExit: the recipes or the training sets differ, or a set was scored twice with one seed.
    """
    def shared(result: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in result["recipe"].items() if k != "seed"}

    recipe = shared(results[0])
    per_seed: dict[str, dict[int, dict[str, Any]]] = {}
    for result in results:
        if (other := shared(result)) != recipe:
            keys = sorted(k for k in recipe.keys() | other.keys() if recipe.get(k) != other.get(k))
            raise SystemExit(f"cannot combine different recipes: they differ in {', '.join(keys)}")
        seed = result["recipe"].get("seed", 0)
        for name, row in result["held_out"].items():
            seen = per_seed.setdefault(name, {})
            if seed in seen:
                raise SystemExit(f"{name} is scored twice with seed {seed}")
            first = next(iter(seen.values()), row)
            if (row["trained_on"], row["n"]) != (first["trained_on"], first["n"]):
                raise SystemExit(f"{name}: the results were trained on different sets or scored different images")
            seen[seed] = row
    rows = {}
    for name, seen in per_seed.items():
        seeds = sorted(seen)
        auc, eer = [seen[s]["auc"] for s in seeds], [seen[s]["eer"] for s in seeds]
        rows[name] = {"trained_on": seen[seeds[0]]["trained_on"], "n": seen[seeds[0]]["n"], "seeds": seeds,
                      "auc": auc, "eer": eer, "auc_mean": float(np.mean(auc)), "auc_min": min(auc),
                      "auc_max": max(auc), "eer_mean": float(np.mean(eer))}
    return {"recipe": recipe, "held_out": rows}


def _markdown(result: dict[str, Any], machine: str) -> str:
    """One run's table, or (for :func:`combine_seeds`' result) the table over seeds."""
    seeds = any("seeds" in r for r in result["held_out"].values())
    recipe = ", ".join(f"{k}={'+'.join(v) if isinstance(v, list) else v}" for k, v in result["recipe"].items())
    recipe += ", over seeds" if seeds else ""
    columns = ("seeds | AUC mean (lowest–highest) | EER mean | AUC per seed" if seeds else
               "AUC | EER | ACC at the model's threshold")
    lines = [f"Recipe: {recipe}. Machine: {machine}. Each row: trained on the other sets' train/ splits, scored on "
             f"the held-out set's validate/ split{', once per seed' if seeds else ''}.", "",
             f"| held-out set | trained on | images | {columns} |", "|---" * (4 + columns.count("|")) + "|"]
    for name, r in result["held_out"].items():
        if seeds:
            cells = (f"{', '.join(map(str, r['seeds']))} | {r['auc_mean']:.3f} ({r['auc_min']:.3f}–{r['auc_max']:.3f}) "
                     f"| {r['eer_mean']:.3f} | {', '.join(f'{a:.3f}' for a in r['auc'])}")
        else:
            cells = f"{r['auc']:.3f} | {r['eer']:.3f} | {r['acc_at_model_threshold']:.3f}"
        lines.append(f"| {name} | {', '.join(r['trained_on'])} | {r['n']} | {cells} |")
    return "\n".join(lines) + "\n"


def _load_runs(paths: list[Path]) -> list[dict[str, Any]]:
    """Single-seed results from result files (a multi-seed file contributes each of its runs)."""
    runs = []
    for path in paths:
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"--combine {path}: not a readable leave-one-out result ({e})") from None
        runs += [r | {"machine": r.get("machine", result.get("machine"))} for r in result.get("runs", [result])]
    return runs


def main() -> None:
    """Command-line entry: writes ``OUT.json`` and ``OUT.md``; run folders go under ``--runs``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", type=Path, help="the data sets (each with train/ and validate/)")
    p.add_argument("--combine", nargs="+", type=Path, metavar="JSON",
                   help="merge these results of one recipe (different seeds or held-out sets) instead of training")
    p.add_argument("--model", default="meso4")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--max-steps-per-epoch", type=int, help="cap the steps per epoch (a quick, weaker run)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, help="dfx-train --batch-size (its learning rate scales with it)")
    p.add_argument("--seed", type=int, nargs="+", default=[0], help="one run per seed; several: mean and range")
    p.add_argument("--held-out", nargs="+", help="hold out only these sets (folder names); default: each in turn")
    p.add_argument("--sbi", type=float, default=0.0, help="self-blended pseudo-fakes per real image (dfx-train --sbi)")
    p.add_argument("--balance", default=None, help="dfx-train --balance (loss, sampler, source, none)")
    p.add_argument("--select", default=None, help="dfx-train --select (auc, worst-source)")
    p.add_argument("--augment", default=None, help="dfx-train --augment (e.g. flip,crop,color,jpeg,blur,rescale)")
    p.add_argument("--cache", default="auto", help="dfx-train --cache (auto, ram, disk, none); always recorded")
    p.add_argument("--runs", type=Path, default=Path("runs/loso"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/loso"))
    args = p.parse_args()
    if bool(args.data) == bool(args.combine):
        p.error("give either --data (to train and score) or --combine (to merge earlier results)")
    if len(set(args.seed)) < len(args.seed):
        p.error(f"--seed {' '.join(map(str, args.seed))}: each seed once")
    if args.combine:
        runs = _load_runs(args.combine)
        machine = "; ".join(dict.fromkeys(str(r["machine"]) for r in runs))
    else:
        recipe = {"workers": args.workers, "cache": args.cache}
        if args.max_steps_per_epoch:
            recipe["max_steps_per_epoch"] = args.max_steps_per_epoch
        if args.sbi:
            recipe["sbi"] = args.sbi
        for key in ("batch_size", "balance", "select"):
            if getattr(args, key):
                recipe[key] = getattr(args, key)
        if args.augment:
            recipe["augment"] = [a.strip() for a in args.augment.split(",") if a.strip() and a.strip() != "none"]
        from dfx.benchmarks.bench import machine_line

        machine = machine_line()
        several = len(args.seed) > 1
        runs = []
        for seed in args.seed:
            folder = args.runs / f"seed-{seed}" if several else args.runs
            runs.append(leave_one_out(args.data, args.model, args.epochs, folder, args.held_out, **recipe, seed=seed)
                        | {"machine": machine})
            if several and len(runs) < len(args.seed):
                # Hours of training per seed: an interrupted run keeps the table over the seeds it finished.
                _write(runs, machine, args.out)
    print(_write(runs, machine, args.out))


def _write(runs: list[dict[str, Any]], machine: str, out: Path) -> str:
    """Writes ``out.json`` and ``out.md`` (one run's table, or the table over seeds); returns the table."""
    result = runs[0] if len(runs) == 1 else combine_seeds(runs) | {"machine": machine, "runs": runs}
    table = _markdown(result, machine)
    save_result(out, result, table)
    return table


if __name__ == "__main__":
    main()
