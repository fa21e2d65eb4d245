"""``dfx-train``: train a detector on folders of real and fake face images."""

from __future__ import annotations

import click

from dfx.cli_common import DfxCommand, common_options, run_cli, setup_logging
from dfx.engine.errors import DfxError

from .options import (
    AUGMENT_ON,
    AUGMENTATIONS,
    BALANCE_MODES,
    CACHE_MODES,
    DEFAULT_AUGMENTATIONS,
    SELECT_MODES,
    TRAIN_FACE_MODES,
)

__all__ = ["main"]


@click.command(cls=DfxCommand,
               help="Train MODEL (meso4, mesoinception4, xception, efficientnet_b0, vit_b16; aliases meso, "
                    "mesoinception, effnet, vit) on folders of real and fake faces.", epilog="""\b
Examples:
  dfx-train meso4 --data ../shared/data/mesonet-deepfake --epochs 10
  dfx-train vit --data faces/ --epochs 8 --pretrained-file vit_b16.safetensors
  dfx-train mesoinception4 --data d/ --init-from MesoInception_DF.h5 --epochs 0
  dfx-train xception --data d/ --resume
""")
@click.argument("model")
@click.option("--data", "data", multiple=True, type=click.Path(file_okay=False),
              help="Folder with train/{real,fake} and validate/{real,fake}, or just real/ and fake/. Repeatable "
                   "(not needed with --resume).")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder [default: weights/<model>/].")
@click.option("--epochs", type=click.IntRange(0), help="[default: 10; with --resume, the run's own]")
@click.option("--batch-size", type=int, help="[default: per model]")
@click.option("--lr", type=float, help="Peak learning rate [default: per model; scaled by the square root of the "
                                       "batch size ratio when --batch-size differs from the model's].")
@click.option("--weight-decay", type=float, help="[default: per model]")
@click.option("--warmup-epochs", type=float, default=1.0, show_default=True)
@click.option("--grad-clip", type=float, default=1.0, show_default=True, help="Max gradient norm (0: off).")
@click.option("--input-size", type=int, help="Square input size [default: the model's].")
@click.option("--pretrained/--no-pretrained", default=None,
              help="ImageNet weights from timm's cache/hub (default for timm models) or random weights.")
@click.option("--pretrained-file", type=click.Path(dir_okay=False), help="Local ImageNet weights file for timm.")
@click.option("--init-from", type=click.Path(dir_okay=False),
              help="Start from a dfx checkpoint (.safetensors) or original MesoNet Keras weights (.h5).")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --out (otherwise refused).")
@click.option("--freeze-epochs", type=int, default=0, show_default=True, help="Train only the head first.")
@click.option("--patience", type=int, default=5, show_default=True, help="Early-stop after N epochs w/o AUC gain.")
@click.option("--balance", type=click.Choice(BALANCE_MODES), default="loss", show_default=True,
              help="Class-imbalance handling: loss weights, a class-balanced sampler, or (source) equal draws per "
                   "data set and class.")
@click.option("--augment", default=",".join(DEFAULT_AUGMENTATIONS), show_default=True,
              help=f"Comma-separated subset of: {', '.join(AUGMENTATIONS)} ('none' for none).")
@click.option("--val-fraction", type=float, default=0.15, show_default=True,
              help="Held-out share when the data has no validate/ folder.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, help="DataLoader workers [default: min(4, cores)].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 …")
@click.option("--ema-decay", type=float, default=0.998, show_default=True,
              help="Evaluate and keep an exponential moving average of the weights (0: off).")
@click.option("--max-steps-per-epoch", type=int, help="Cap the steps per epoch (quick experiments).")
@click.option("--cache", type=click.Choice(CACHE_MODES), default="auto", show_default=True,
              help="Decode the training and validation images once into RAM (ram), a memory-mapped file in the run "
                   "folder (disk) or whichever fits (auto: RAM when it fits half the free memory, else disk, else "
                   "none); none decodes every epoch.")
@click.option("--sbi", type=float, default=0.0, show_default=True,
              help="Self-blended pseudo-fakes (Shiohara & Yamasaki, CVPR 2022) per real image and epoch, added to the "
                   "fake class: the published lever for unseen face swaps. 0 = off, at most 1.")
@click.option("--consistency", type=float, default=0.0, show_default=True,
              help="Weight of a penalty on score changes when each training image is cut again 0–10 % tighter "
                   "(scores of faces that a detector frames a little differently stay alike). 0 = off; each step "
                   "then scores twice the images.")
@click.option("--select", type=click.Choice(SELECT_MODES), default="auc", show_default=True,
              help="Keep the epoch with the best pooled validation AUC, or with the best worst-source AUC.")
@click.option("--calibrate/--no-calibrate", default=True, show_default=True,
              help="Fit a temperature on the validation split at the end; the artifacts' scores become "
                   "calibrated probabilities (ECE before/after in the model card).")
@click.option("--threshold-policy", default="eer", show_default=True,
              help="The label threshold: eer, fpr=<rate> (e.g. fpr=0.01) or f1, on the validation scores.")
@click.option("--augment-on", type=click.Choice(AUGMENT_ON), default="auto", show_default=True,
              help="Augment each image in the DataLoader workers, or whole batches on the device (needs the cache); "
                   "auto = on the device whenever the images are cached.")
@click.option("--amp/--no-amp", default=True, show_default=True,
              help="Mixed precision for the training steps where the hardware computes it natively: bf16 on "
                   "Ampere+ GPUs and on CPUs with AVX512-BF16 or AMX, fp16 with loss scaling on older GPUs. "
                   "Evaluation always runs in full precision.")
@click.option("--compile", "compile", is_flag=True,
              help="torch.compile the model for the training steps (compiles for a minute or more first).")
@click.option("--deterministic", is_flag=True,
              help="Reproducible GPU kernels instead of the fastest, so a rerun gives the same weights bit for bit "
                   "(slower on a GPU; CPU runs are reproducible anyway).")
@click.option("--faces", type=click.Choice(TRAIN_FACE_MODES), default="off", show_default=True,
              help="precropped: the folders hold face crops; their framing is measured and recorded so dfx-infer "
                   "crops photos alike. detect: crop every image to its face with dfx-infer's detector first. "
                   "off: whole images.")
@click.option("--face-scale", type=float,
              help="With --faces detect: the crop's side in detector boxes [default: 1.3].")
@common_options
@run_cli
def main(model: str, data: tuple[str, ...], resume: bool, overwrite: bool, augment: str, verbose: int, quiet: bool,
         **opts) -> None:
    setup_logging(verbose, quiet)
    from .trainer import TrainConfig, train  # torch: imported only when there is training to do
    if not data and not resume:
        raise DfxError("--data is required (a folder with real/ and fake/, or train/ and validate/ inside)")
    aug = [] if augment.strip().lower() == "none" else [a.strip() for a in augment.split(",") if a.strip()]
    cfg = TrainConfig(model=model, data=list(data), augment=aug, **opts)
    result = train(cfg, resume=resume, overwrite=overwrite)
    best = result["best"]
    click.echo(f"best epoch {result['best_epoch']}: val auc {best['auc']:.4f} acc {best['acc']:.4f} "
               f"eer {best['eer']:.4f} → {result['checkpoint']}")
