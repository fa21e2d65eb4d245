"""Training benchmark: dfx-train's own images/s against the training-step ceiling of the same model.

Per model, in one run on one machine:
- ceiling: forward + backward + AdamW step on a synthetic batch already on the device (what the model allows);
- dfx-train: images/s of its second epoch (the first pays start-up) on real data, once per variant
  (``--variants``: ``CACHE/AUGMENT_ON[/compile][/fp32][/det][/noaug]``, e.g. ``none/workers`` decodes and augments
  every image in the DataLoader workers each epoch, ``ram/device`` augments batches on the device from the RAM
  cache, ``/fp32`` turns mixed precision off as ``--no-amp`` does, ``/det`` is ``--deterministic``, ``/noaug``
  ``--augment none`` (what augmentation costs));
- their ratio;
- with ``--feed``, dfx-train's feed alone: its DataLoader, batch assembly and device augmentation, no model step
  (if this is well above the ceiling while dfx-train is not, the time goes to feed and step competing).

The loader prefetches ``2 × workers`` batches, and it does so during the first epoch's validation too. An epoch
no longer than that queue measures the steps with their batches ready; ``--repeat K`` lists every training image
K times (links, so the epoch is K times as long) so that most of the measured epoch is fed as it runs.

Run from the repository root::

    python -m dfx.benchmarks.train_throughput --data ../shared/data/mesonet-deepfake --models meso4 \\
        --out benchmarks/results/train-cpu
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from dfx.benchmarks.report import save_result

__all__ = ["step_ceiling", "train_rate", "feed_rate", "repeated_data"]


def step_ceiling(model_name: str, batch_size: int, device: str, steps: int = 20) -> float:
    """Training images/s on a synthetic batch already on the device (mixed precision and channels_last as
    dfx-train)."""
    import torch

    from dfx.training import create_model, get_entry
    from dfx.training.trainer import _algorithms, _mixed_precision

    dev = torch.device(device)
    use_amp, amp_dtype = _mixed_precision(dev)
    spec = get_entry(model_name).default_spec
    model, _ = create_model(model_name, spec, pretrained=False)
    model.to(dev, memory_format=torch.channels_last).train()
    x = torch.randn(batch_size, 3, *spec.input_size, device=dev).contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    y = torch.randint(0, 2, (batch_size,), device=dev).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step() -> None:
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
            loss = loss_fn(model(x).squeeze(1).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with _algorithms(deterministic=False):  # the kernel choice dfx-train makes by default
        for _ in range(3):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - t0)


def train_rate(model_name: str, data: Path, batch_size: int, variant: str, steps: int, workers: int,
               device: str = "auto") -> float:
    """dfx-train's images/s in its second epoch of ``steps`` steps, for a
    ``CACHE/AUGMENT_ON[/compile][/fp32][/det][/noaug]`` variant."""
    from dfx.training.report import read_metrics
    from dfx.training.trainer import TrainConfig, train

    cache, augment_on, *rest = variant.split("/")
    with tempfile.TemporaryDirectory() as tmp:
        train(TrainConfig(model=model_name, data=[str(data)], out=tmp, epochs=2, batch_size=batch_size,
                          max_steps_per_epoch=steps, workers=workers, cache=cache, augment_on=augment_on,
                          compile="compile" in rest, amp="fp32" not in rest, deterministic="det" in rest,
                          **({"augment": []} if "noaug" in rest else {}),
                          pretrained=False, patience=5,
                          device=device, calibrate=False))
        return read_metrics(Path(tmp))[-1]["images_per_s"]


def feed_rate(model_name: str, data: Path, batch_size: int, steps: int, workers: int, device: str) -> float:
    """Images/s that dfx-train's feed delivers on the device, model aside: the default path's DataLoader (RAM cache,
    one loader for the run), batch assembly (:mod:`dfx.training.batch_feed`) and device augmentation."""
    import torch
    from torch.utils.data import DataLoader

    from dfx.training import get_entry
    from dfx.training.augment_batch import BatchAugment
    from dfx.training.batch_feed import BatchImages, collate_rows
    from dfx.training.cache import decode_once
    from dfx.training.data import FaceDataset, load_splits
    from dfx.training.epochs import RunBatches
    from dfx.training.options import DEFAULT_AUGMENTATIONS

    dev = torch.device(device)
    spec = get_entry(model_name).default_spec
    samples = load_splits([data]).train
    with tempfile.TemporaryDirectory() as tmp:
        cache, errors = decode_once([s.path for s in samples], spec, "ram", Path(tmp))
    if cache is None or errors:
        raise SystemExit(f"--feed needs every training image of {data} decoded into RAM")
    augment = BatchAugment(DEFAULT_AUGMENTATIONS, spec)
    ds = FaceDataset(samples, spec, cache=cache, rows=list(range(len(samples))), batch_augment=augment)
    per_epoch = max(1, min(steps, len(ds) // batch_size))
    batches = iter(DataLoader(ds, batch_sampler=RunBatches(len(ds), batch_size, per_epoch, 0, range(2)),
                              num_workers=workers, pin_memory=dev.type == "cuda", collate_fn=collate_rows))
    images = BatchImages(cache, dev)

    def run(n: int) -> None:
        for _ in range(n):
            batch = next(batches)
            augment.apply(images(batch), batch[1])
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    run(per_epoch)  # the first epoch starts the workers and fills the queue
    t0 = time.perf_counter()
    run(per_epoch)
    return per_epoch * batch_size / (time.perf_counter() - t0)


def repeated_data(data: Path, k: int, root: Path) -> Path:
    """``root`` laid out as ``data`` (``train/`` and ``validate/``) with every training image linked ``k`` times."""
    if not (data / "train").is_dir() or not (data / "validate").is_dir():
        raise SystemExit(f"--repeat needs {data}/train and {data}/validate (repeating a flat folder would let "
                         f"copies of one image reach both splits)")
    for src in sorted(p for p in (data / "train").rglob("*") if p.is_file()):
        rel = src.relative_to(data / "train")
        (root / "train" / rel.parent).mkdir(parents=True, exist_ok=True)
        for j in range(k):
            os.symlink(src.resolve(), root / "train" / rel.parent / f"r{j}_{rel.name}")
    os.symlink((data / "validate").resolve(), root / "validate")
    return root


def main() -> None:
    """Command-line entry: writes ``OUT.json`` and ``OUT.md``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--models", default="meso4")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=40, help="steps per epoch of the dfx-train runs")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--variants", default="none/workers,ram/workers,ram/device",
                   help="comma-separated CACHE/AUGMENT_ON[/compile][/fp32][/det][/noaug] runs of dfx-train")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=1, help="list each training image this many times (see above)")
    p.add_argument("--feed", action="store_true", help="also measure dfx-train's feed alone (see above)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/train-cpu"))
    args = p.parse_args()
    from dfx.benchmarks.bench import _environment
    from dfx.training.host_memory import keep_freed_memory

    if args.device == "cpu":  # as dfx-train does on a CPU: the ceiling is then measured under the same allocator
        keep_freed_memory()

    result = {"machine": _environment(), "data": str(args.data), "settings": vars(args) | {"out": str(args.out),
                                                                                         "data": str(args.data)},
              "models": {}}
    tmp = tempfile.TemporaryDirectory()
    data = repeated_data(args.data, args.repeat, Path(tmp.name)) if args.repeat > 1 else args.data
    for model in args.models.split(","):
        ceiling = step_ceiling(model, args.batch_size, args.device)
        rates = {v: train_rate(model, data, args.batch_size, v, args.steps, args.workers, args.device)
                 for v in args.variants.split(",")}
        result["models"][model] = {"ceiling": ceiling, "dfx_train": rates}
        if args.feed:
            result["models"][model]["feed"] = feed_rate(model, data, args.batch_size, args.steps, args.workers,
                                                        args.device)
        print(model, f"ceiling {ceiling:.1f} img/s;", ", ".join(f"{v}: {r:.1f} img/s ({r / ceiling:.2f})"
                                                                for v, r in rates.items()),
              f"; feed alone {result['models'][model]['feed']:.1f} img/s" if args.feed else "", flush=True)
        _write(result, args)  # after every model: a run cut short keeps what it measured


def _write(result: dict, args: argparse.Namespace) -> None:
    env = result["machine"]
    lines = [f"Machine: {env['cpu']}, {env['cores']} cores; {', '.join(env['gpus']) or 'no GPU'}; device "
             f"{args.device}; batch {args.batch_size}; dfx-train: 2 epochs of {args.steps} steps, {args.workers} "
             f"workers, images/s of the second epoch; data {args.data}"
             f"{f', each training image listed {args.repeat} times' if args.repeat > 1 else ''}.", "",
             "| model | step ceiling img/s | " + " | ".join(f"dfx-train {v} img/s (÷ ceiling)"
                                                         for v in args.variants.split(",")) +
             (" | feed alone img/s (÷ ceiling)" if args.feed else "") + " |",
             "|---|---|" + "---|" * (len(args.variants.split(",")) + args.feed)]
    for m, r in result["models"].items():
        rates = [*r["dfx_train"].values()] + ([r["feed"]] if args.feed else [])
        cells = [f"{v:.1f} ({v / r['ceiling']:.2f})" for v in rates]
        lines.append(f"| {m} | {r['ceiling']:.1f} | " + " | ".join(cells) + " |")
    save_result(args.out, result, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
