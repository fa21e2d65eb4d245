"""Option values of dfx-train that its ``--help`` needs, kept free of torch so the help appears at once."""

__all__ = ["AUGMENTATIONS", "DEFAULT_AUGMENTATIONS", "RESCALE_SIDES", "AUGMENT_ON", "BALANCE_MODES",
           "SELECT_MODES", "CROP_MIN_AREA", "CONTEXT_ZOOM", "CACHE_MODES", "TRAIN_FACE_MODES"]

# augmentation → probability it is applied to an image
AUGMENTATIONS = {"flip": 0.5, "crop": 0.5, "color": 0.5, "jpeg": 0.3, "blur": 0.2, "rescale": 0.3, "context": 0.3}
# rescale and context (device path only) stay opt-in: neither gained on the measures that decide (README,
# "Rescaling", "Context")
DEFAULT_AUGMENTATIONS = ("flip", "crop", "color", "jpeg", "blur")
# context: the face shrunk into a frame of another image of the batch, its side this many times the face's
# (a face in a photo, a screenshot or a collage is cut wider than its crop file: the paste's edge comes into view)
CONTEXT_ZOOM = (1.0, 1.4)
RESCALE_SIDES = (64, 384)  # rescale: the image's longer side is redrawn log-uniformly in this range, in pixels
BALANCE_MODES = ("loss", "sampler", "source", "none")  # source: equal draws per (data set, class)
SELECT_MODES = ("auc", "worst-source")  # what picks the kept epoch: pooled validation AUC, or the worst source's
CROP_MIN_AREA = 0.8  # the random crop keeps at least this share of the image's area
CACHE_MODES = ("auto", "ram", "disk", "none")  # where the once-decoded training images live
TRAIN_FACE_MODES = ("off", "precropped", "detect")  # dfx-train --faces (training/faces.py)
AUGMENT_ON = ("auto", "workers", "device")  # where augmentation runs (training/augment_batch.py)
