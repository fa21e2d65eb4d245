"""Option values of dfx-train that its ``--help`` needs, kept free of torch so the help appears at once."""

__all__ = ["AUGMENTATIONS", "DEFAULT_AUGMENTATIONS", "RESCALE_SIDES", "AUGMENT_ON", "BALANCE_MODES",
           "SELECT_MODES", "CROP_MIN_AREA", "CACHE_MODES", "TRAIN_FACE_MODES"]

# augmentation → probability it is applied to an image
AUGMENTATIONS = {"flip": 0.5, "crop": 0.5, "color": 0.5, "jpeg": 0.3, "blur": 0.2, "rescale": 0.3}
# rescale stays opt-in until a default-recipe run measures it (README, "Faces in photos": consistency)
DEFAULT_AUGMENTATIONS = ("flip", "crop", "color", "jpeg", "blur")
RESCALE_SIDES = (64, 384)  # rescale: the image's longer side is redrawn log-uniformly in this range, in pixels
BALANCE_MODES = ("loss", "sampler", "source", "none")  # source: equal draws per (data set, class)
SELECT_MODES = ("auc", "worst-source")  # what picks the kept epoch: pooled validation AUC, or the worst source's
CROP_MIN_AREA = 0.8  # the random crop keeps at least this share of the image's area
CACHE_MODES = ("auto", "ram", "disk", "none")  # where the once-decoded training images live
TRAIN_FACE_MODES = ("off", "precropped", "detect")  # dfx-train --faces (training/faces.py)
AUGMENT_ON = ("auto", "workers", "device")  # where augmentation runs (training/augment_batch.py)
