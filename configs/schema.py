"""Typed sections of the experiment config, with the reference STARE defaults.

Each INI section is one frozen dataclass holding only keys some code reads; the field
names are the reference's (`train_eval_infer.config`) where it has them, so its files
read unchanged. Fields the reference does not have (e.g. [preprocess], blending
options) carry our defaults. The reference's keys that this tool has no use for are
listed in COMPATIBILITY_KEYS: a file may hold them, and each prints one line, once,
"accepted for compatibility, has no effect". Each setting has one name; the
reference's second names are ALIASES, read into the one name with a one-line note.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Optional

from tiled_vessel_seg import names

# The reference augmentation set, by the names the preprocessing job writes into records.
DISTORTION_CENTERS = ((0.3, 0.3), (0.7, 0.3), (0.5, 0.5), (0.3, 0.7), (0.7, 0.7))
REFERENCE_AUGMENTATIONS = (
    "hflip", "vflip", "rot90", "rot180", "rot270",
    "elastic", "grid_distortion_1", "grid_distortion_2",
    "barrel", "pincushion",
)


# ---------------------------------------------------------------- range checks shared by
# the config sections, the tools' flags and the Python API (one place for every limit).

def check_threshold(value: object, where: str = "threshold") -> float:
    """`value` as a float in the open interval (0, 1); ValueError naming `where` otherwise
    (nan, 0, 1, 2.0 and -1 gave all-black or all-white masks)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0.0 < float(value) < 1.0:
        raise ValueError(f"{where} must be a number in (0, 1), got {value!r}")
    return float(value)


# [model] loss: the losses trainer/losses.py builds (tiled_vessel_seg/keras_objects.py).
LOSS_NAMES = ("bce_dice_loss", "balanced_bce_dice_loss")
# [train] monitor: the logged validation value that selects best_model.keras, stops early
# and cuts the learning rate on a plateau, and whether lower or higher is better.
MONITOR_MODES = {"val_loss": "min", "val_dice": "max", "val_auc": "max"}

IMAGE_ENCODINGS = ("jpeg", "png", "raw")  # tile pixels in the records (tfrecords/encoding.py)
MASK_ENCODINGS = ("packed", "png")


def _one_of(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + " or " + choices[-1]


def check_choice(value: object, choices: tuple[str, ...], where: str) -> str:
    """`value` if it is one of `choices`; ValueError naming `where` otherwise."""
    if value not in choices:
        raise ValueError(f"{where} must be {_one_of(choices)}, got {value!r}")
    return value  # type: ignore[return-value]


def check_jpeg_quality(value: int, where: str = "jpeg_quality") -> int:
    """A JPEG quality in [1, 100]; ValueError naming `where` otherwise."""
    if not 1 <= int(value) <= 100:
        raise ValueError(f"{where} must be in [1, 100], got {value}")
    return int(value)


def check_robust_augmentation(zoom: tuple[float, float], gamma: tuple[float, float],
                              channel_gain: float, blur_sigma: float, jpeg_quality: int,
                              keys: tuple[str, ...] = ("zoom_range", "gamma_range",
                                                       "channel_gain", "blur_sigma",
                                                       "jpeg_quality")) -> None:
    """The ranges of the robustness augmentation ([train] augment_* keys and
    tfrecords.robust_augment.RobustAugmentation, named by `keys` in that order)."""
    for name, (low, high) in zip(keys[:2], (zoom, gamma)):
        if not 0.0 < low <= high:
            raise ValueError(f"{name} must be (low, high) with 0 < low <= high, "
                             f"got {(low, high)}")
    if not 0.0 <= channel_gain < 1.0:
        raise ValueError(f"{keys[2]} must be in [0, 1), got {channel_gain}")
    if blur_sigma < 0.0:
        raise ValueError(f"{keys[3]} must be >= 0, got {blur_sigma}")
    check_jpeg_quality(jpeg_quality, keys[4])


def parse_split(text: str) -> dict[str, float]:
    """'train=0.7,valid=0.15,test=0.15' -> {'train': 0.7, 'valid': 0.15, 'test': 0.15}.

    Shares must be >= 0 and sum to 1 (within 1e-6); missing splits get share 0.
    """
    shares = {name: 0.0 for name in names.SPLIT_NAMES}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in names.SPLIT_NAMES:
            raise ValueError(f"split {text!r}: expected name=share with names from "
                             f"{', '.join(names.SPLIT_NAMES)}, got {item.strip()!r}")
        try:
            share = float(value)
        except ValueError:
            raise ValueError(f"split {text!r}: share of {name} is not a number: "
                             f"{value!r}") from None
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"split {text!r}: share of {name} must be in [0, 1], got {share}")
        shares[name] = share
    total = sum(shares.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"split {text!r}: shares sum to {total:g}, not 1")
    return shares


class TooLargeError(ValueError):
    """A size whose arrays would not fit in this machine's memory (refused before they
    are allocated)."""


def available_memory_bytes() -> int:
    """Memory this process can allocate without swapping: /proc/meminfo MemAvailable, else
    the physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: no limit


def check_memory(needed_bytes: float, what: str) -> None:
    """Raises TooLargeError when `needed_bytes` exceed the available memory."""
    available = available_memory_bytes()
    if needed_bytes > available:
        raise TooLargeError(f"{what} needs about {needed_bytes / 2**30:,.1f} GiB of memory; "
                            f"this machine has {available / 2**30:,.1f} GiB available")


def dilated_extent(kernel: int, dilation: int) -> int:
    """Pixels one dilated convolution spans: (kernel - 1) * dilation + 1."""
    return (kernel - 1) * dilation + 1


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """[model]: the reference U-Net (124,996,849 parameters at these defaults).

    image_width, image_height: the model's input size. Not keys of their own: the config
    reader sets both to [preprocess] tile_size, the one name of the tile size (a file's
    [model] image_width / image_height are read as that alias).
    """
    model: str = "TensorflowUNet"
    image_width: int = 512
    image_height: int = 512
    image_channels: int = 3
    num_classes: int = 1
    base_filters: int = 16
    base_kernels: tuple[int, int] = (9, 9)
    num_layers: int = 8
    dropout_rate: float = 0.05
    learning_rate: float = 7e-5
    clipvalue: Optional[float] = 0.5
    dilation: tuple[int, int] = (3, 3)
    normalization: bool = False
    # "unet": one U-Net. "wnet": two U-Nets in sequence, the second taking the image and the
    # first's probabilities; both outputs supervised (lwnet), only the second's is served.
    architecture: str = "unet"
    # A layer inside the model after the [0, 1] input: "none", or "per_tile" (each tile's
    # channels to zero mean and unit variance), so inference still feeds raw [0, 1] RGB.
    input_standardization: str = "none"
    # "bce_dice_loss": (BCE + 1 - Dice) / 2, the reference's. "balanced_bce_dice_loss": the
    # BCE class-balanced (lwnet, binseg): with P vessel pixels among the N counted pixels of
    # the global batch (inside the FOV with [train] loss_mask = "fov"), each vessel pixel
    # weighs N / (2 P) and each background pixel N / (2 (N - P)), so both classes count
    # equally (plain BCE on a batch without vessels); the Dice term is the same.
    loss: str = "bce_dice_loss"
    show_summary: bool = False

    def __post_init__(self):
        if not (isinstance(self.learning_rate, (int, float))
                and math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"[model] learning_rate must be > 0, got {self.learning_rate}")
        if self.clipvalue is not None and not (math.isfinite(self.clipvalue)
                                               and self.clipvalue > 0):
            raise ValueError(f"[model] clipvalue must be > 0 or None, got {self.clipvalue}")
        for name in ("base_kernels", "dilation"):
            if min(getattr(self, name)) < 1:
                raise ValueError(f"[model] {name} must be >= 1, got {getattr(self, name)}")
        if self.num_layers < 1:
            raise ValueError(f"[model] num_layers must be >= 1, got {self.num_layers}")
        if self.base_filters < 1:
            raise ValueError(f"[model] base_filters must be >= 1, got {self.base_filters}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"[model] dropout_rate must be in [0, 1), got {self.dropout_rate}")
        if self.architecture not in ("unet", "wnet"):
            raise ValueError(f"[model] architecture must be unet or wnet, got {self.architecture!r}")
        if self.input_standardization not in ("none", "per_tile"):
            raise ValueError(f"[model] input_standardization must be none or per_tile, "
                             f"got {self.input_standardization!r}")
        check_choice(self.loss, LOSS_NAMES, "[model] loss")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """[train]: batch_size is per replica; the global batch is batch_size x replicas."""
    epochs: int = 100
    batch_size: int = 2
    steps_per_epoch: Optional[int] = None
    validation_steps: Optional[int] = None
    patience: int = 20
    metrics: tuple[str, ...] = ("dice_coef", "val_dice_coef")
    model_dir: str = "./models"
    epoch_change_tiledinfer: bool = False
    num_infer_images: int = 6
    learning_rate_reducer: bool = True
    reducer_factor: float = 0.4
    reducer_patience: int = 4
    shuffle_buffer: int = 256
    online_augmentation: bool = False
    # Robustness to other cameras (tfrecords/robust_augment.py), drawn per tile and epoch:
    # zoom on vessel widths (low, high), per-channel gains 1 +- g, gamma (low, high), blur
    # sigma up to s px and JPEG quality down to q on half the tiles. Defaults: off.
    augment_zoom: tuple[float, float] = (1.0, 1.0)
    augment_channel_gain: float = 0.0
    augment_gamma: tuple[float, float] = (1.0, 1.0)
    augment_blur_sigma: float = 0.0
    augment_jpeg_quality: int = 100
    # Several datasets in one run: the share of training tiles drawn from each, by the
    # dataset name the records carry (tiled_vessel_seg/sources.py), e.g. {"stare": 0.5,
    # "chase_db1": 0.5}; every dataset of the training split needs a weight (0 leaves it
    # out), the weights are normalised. Empty: tiles in proportion to their numbers.
    dataset_weights: dict[str, float] = dataclasses.field(default_factory=dict)
    seed: int = 0
    # tf.data element order reproducible run to run (slower input pipeline), and
    # tf.config.experimental.enable_op_determinism() (vessel-train --deterministic).
    deterministic: bool = False
    # "plateau": [model] learning_rate, cut by ReduceLROnPlateau (learning_rate_reducer).
    # "cosine": cosine cycles from [model] learning_rate down to min_learning_rate, each
    # cosine_cycle_epochs long, restarting at the top (lwnet); no plateau reduction.
    lr_schedule: str = "plateau"
    cosine_cycle_epochs: int = 10
    min_learning_rate: float = 1e-8
    # After training, set model_info.json's threshold to the one maximising F1 over the
    # validation tiles (else [tiledinfer] threshold is stored).
    select_threshold: bool = False
    # vessel-cv: after training, the threshold maximising F1 inside the FOV of the
    # validation photo segmented whole (native size, [tiledinfer] tiling and TTA).
    select_image_threshold: bool = False
    # The photos select_image_threshold chooses on: "valid" (the validation subject's) or
    # "train" (every training photo: many more pixels, but ones the model has fitted).
    threshold_photos: str = "valid"
    # auto | one_device | mirrored | multi_worker (trainer/strategy.py); vessel-train --strategy.
    strategy: str = "auto"
    # "fov": pixels outside the field of view count in neither the loss nor the training
    # metrics (the records must carry FOV planes: [preprocess] fov_masks, which this turns
    # on). "none": every pixel of the tile counts.
    loss_mask: str = "none"
    # Fine-tuning: start from the weights of a shipped model ("stare_small") or a model
    # dir written by vessel-train, instead of random ones (vessel-train/run/cv
    # --init_model). [model] must build the same architecture. "": random weights.
    init_model: str = ""
    # The validation value best_model.keras is chosen by, and that early stopping
    # (`patience`) and the plateau reduction (`reducer_patience`) watch: "val_loss" (lowest),
    # "val_dice" (pixel F1 at [tiledinfer] threshold, highest) or "val_auc" (ROC AUC,
    # highest), all over the validation tiles (inside the FOV with loss_mask = "fov").
    monitor: str = "val_loss"

    def __post_init__(self):
        if self.loss_mask not in ("none", "fov"):
            raise ValueError(f"[train] loss_mask must be none or fov, got {self.loss_mask!r}")
        check_choice(self.monitor, tuple(MONITOR_MODES), "[train] monitor")
        check_choice(self.threshold_photos, ("valid", "train"), "[train] threshold_photos")
        weights = self.dataset_weights
        if weights and (min(weights.values()) < 0 or not sum(weights.values()) > 0):
            raise ValueError(f"[train] dataset_weights must be >= 0 with a positive sum, "
                             f"got {weights}")
        if self.strategy not in names.STRATEGIES:
            raise ValueError(f"[train] strategy must be auto, one_device, mirrored or "
                             f"multi_worker, got {self.strategy!r}")
        if self.batch_size < 1:
            raise ValueError(f"[train] batch_size must be >= 1, got {self.batch_size}")
        if self.epochs < 1:
            raise ValueError(f"[train] epochs must be >= 1, got {self.epochs}")
        for key in ("steps_per_epoch", "validation_steps"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"[train] {key} must be >= 1 or None, got {value}")
        if self.shuffle_buffer < 0:
            raise ValueError(f"[train] shuffle_buffer must be >= 0, got {self.shuffle_buffer}")
        if self.patience < 1:
            raise ValueError(f"[train] patience must be >= 1, got {self.patience}")
        if self.lr_schedule not in ("plateau", "cosine"):
            raise ValueError(f"[train] lr_schedule must be plateau or cosine, got {self.lr_schedule!r}")
        if self.cosine_cycle_epochs < 1:
            raise ValueError(f"[train] cosine_cycle_epochs must be >= 1, got {self.cosine_cycle_epochs}")
        if not (math.isfinite(self.min_learning_rate) and self.min_learning_rate >= 0):
            raise ValueError(f"[train] min_learning_rate must be >= 0, got {self.min_learning_rate}")
        if not 0.0 < self.reducer_factor < 1.0:
            raise ValueError(f"[train] reducer_factor must be in (0, 1), got {self.reducer_factor}")
        check_robust_augmentation(
            self.augment_zoom, self.augment_gamma, self.augment_channel_gain,
            self.augment_blur_sigma, self.augment_jpeg_quality,
            tuple(f"[train] augment_{key}" for key in ("zoom", "gamma", "channel_gain",
                                                       "blur_sigma", "jpeg_quality")))

    @property
    def monitor_mode(self) -> str:
        """The direction of `monitor`: "min" when lower is better (val_loss), else "max"."""
        return MONITOR_MODES[self.monitor]


@dataclasses.dataclass(frozen=True)
class TiledInferConfig:
    """[tiledinfer]: overlapping-tile inference. `overlap` is the tile overlap in px (the
    reference's `overlapping` is read as its alias)."""
    overlap: int = 64
    images_dir: Optional[str] = None
    batch_size: int = 4
    blend: str = "gaussian"
    tta: str = "none"
    threshold: float = 0.5
    # "enlarged": images_dir holds photos already at training scale (the reference's
    # 3500x3025 mini_test); "native": the graph enlarges them by the model's scale;
    # "auto": each photo resampled to the model's FOV diameter (models that record none:
    # native or enlarged chosen by the photo's size); a number: every photo resampled by
    # it (inference/input_scale.py).
    input_scale: str | float = "auto"
    # When set, replaces `overlap`: per image the smallest tile grid whose tiles overlap by
    # >= min_overlap px, with no reflected margin (42 tiles at 3500x3025 for <= 9 px, where
    # overlap 64 takes 56).
    min_overlap: Optional[int] = None
    # How the graph cuts tiles: "slices" (fastest on a CPU), "extract_patches" (the
    # design's op, for GPUs) or "auto" (extract_patches when TensorFlow sees a GPU).
    tiler: str = "auto"

    def __post_init__(self):
        check_threshold(self.threshold, "[tiledinfer] threshold")
        if self.batch_size < 1:
            raise ValueError(f"[tiledinfer] batch_size must be >= 1, got {self.batch_size}")
        if self.overlap < 0:
            raise ValueError(f"[tiledinfer] overlap must be >= 0, got {self.overlap}")
        if self.blend not in ("gaussian", "linear", "none"):
            raise ValueError(f"[tiledinfer] blend must be gaussian, linear or none, got {self.blend!r}")
        if not (self.input_scale in ("auto", "enlarged", "native")
                or (isinstance(self.input_scale, float) and 0.0 < self.input_scale <= 16.0)):
            raise ValueError(f"[tiledinfer] input_scale must be auto, enlarged, native or a "
                             f"resampling factor in (0, 16], got {self.input_scale!r}")
        if self.tta not in ("none", "flips", "d4"):
            raise ValueError(f"[tiledinfer] tta must be none, flips or d4, got {self.tta!r}")
        if self.min_overlap is not None and self.min_overlap < 0:
            raise ValueError(f"[tiledinfer] min_overlap must be >= 0, got {self.min_overlap}")
        if self.tiler not in ("auto", "extract_patches", "slices"):
            raise ValueError(f"[tiledinfer] tiler must be auto, extract_patches or slices, "
                             f"got {self.tiler!r}")


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """[preprocess]: the Beam job (beam_jobs/).

    split: "train=0.7,valid=0.15,test=0.15" shares of a seeded shuffle of image ids,
    unless valid_ids / test_ids name the held-out images explicitly.
    """
    scale: int = 5
    tile_size: int = 512
    tile_stride: Optional[int] = None
    min_vessel_fraction: float = 0.0
    augmentations: tuple[str, ...] = REFERENCE_AUGMENTATIONS
    elastic_alpha: float = 1300.0
    elastic_sigma: float = 8.0
    distortion_centers: tuple[tuple[float, float], ...] = DISTORTION_CENTERS
    split: str = "train=0.7,valid=0.15,test=0.15"
    valid_ids: tuple[str, ...] = ()
    test_ids: tuple[str, ...] = ()
    seed: int = 0
    # TFRecord files per split. 0 (Beam's advice): one per bundle of the writing workers,
    # written where the records are made; the count depends on the runner (DirectRunner:
    # one per worker). A fixed count N shuffles every record through the runner into N
    # files: on 2 DirectRunner workers that took 2.4 instead of 1.85 CPU s per augmented
    # STARE image and a second worker no longer sped the job up (benchmarks/).
    shards: int = 0
    # PNG tiles barely shrink under gzip (~9 %) but gzip costs ~7 ms per 512 tile.
    compression: str = "none"
    whole_image: bool = False
    # Tile pixels in the records (tfrecords/encoding.py): image jpeg | png | raw, mask
    # packed | png (always lossless). JPEG 95 + packed bits decode ~5x faster than PNG.
    image_encoding: str = "jpeg"
    jpeg_quality: int = 95
    mask_encoding: str = "packed"
    # Write each tile's field-of-view plane (the dataset's FOV file, else computed from the
    # photograph), cut and augmented with the vessel mask; on whenever [train] loss_mask
    # is "fov".
    fov_masks: bool = False
    # Field-of-view scale harmonisation: each photograph, its labels and FOV plane are
    # resampled by fov_diameter / (its measured FOV diameter, tiled_vessel_seg/fov.py)
    # before the `scale` enlargement, so every camera's FOV is this many px across. A
    # photo with no measurable FOV is a dead letter naming it. None: photos as they are.
    fov_diameter: Optional[float] = None

    def __post_init__(self):
        if self.fov_diameter is not None and not 16.0 <= self.fov_diameter <= 20000.0:
            raise ValueError(f"[preprocess] fov_diameter must be in [16, 20000] px (or unset), "
                             f"got {self.fov_diameter}")
        if self.scale < 1:
            raise ValueError(f"[preprocess] scale must be >= 1, got {self.scale}")
        if self.tile_size < 1:
            raise ValueError(f"[preprocess] tile_size must be >= 1, got {self.tile_size}")
        if self.tile_stride is not None and not 0 < self.tile_stride <= self.tile_size:
            raise ValueError(f"[preprocess] tile_stride must be in [1, tile_size], got {self.tile_stride}")
        if self.compression not in ("gzip", "none"):
            raise ValueError(f"[preprocess] compression must be gzip or none, got {self.compression!r}")
        if self.shards < 0:
            raise ValueError(f"[preprocess] shards must be >= 0 (0: one per writing worker), "
                             f"got {self.shards}")
        check_choice(self.image_encoding, IMAGE_ENCODINGS, "[preprocess] image_encoding")
        check_choice(self.mask_encoding, MASK_ENCODINGS, "[preprocess] mask_encoding")
        check_jpeg_quality(self.jpeg_quality, "[preprocess] jpeg_quality")
        parse_split(self.split)
        unknown = set(self.augmentations) - set(REFERENCE_AUGMENTATIONS)
        if unknown:
            raise ValueError(f"[preprocess] unknown augmentations {sorted(unknown)}; "
                             f"known: {', '.join(REFERENCE_AUGMENTATIONS)}")

    @property
    def stride(self) -> int:
        return self.tile_stride or self.tile_size


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """[synth]: the synthetic STARE-format data that `vessel-run` makes without --stare_dir."""
    num_images: int = 10
    width: int = 700
    height: int = 605
    seed: int = 0

    def __post_init__(self):
        if self.num_images < 1:
            raise ValueError(f"[synth] num_images must be >= 1, got {self.num_images}")
        if min(self.width, self.height) < SYNTH_MIN_SIZE:
            raise ValueError(f"[synth] width and height must be >= {SYNTH_MIN_SIZE}, got "
                             f"{self.width}x{self.height}")


SYNTH_MIN_SIZE = 32  # synthetic/fundus.py MIN_SIZE


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole experiment; one object passed down to every stage."""
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    tiledinfer: TiledInferConfig = TiledInferConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    synth: SynthConfig = SynthConfig()

    def __post_init__(self):
        tile = self.preprocess.tile_size
        spans = [dilated_extent(k, d) for k, d in zip(self.model.base_kernels,
                                                       self.model.dilation)]
        if max(spans) > tile:
            # TF runs a dilated convolution on the tile padded to the dilation: (100000,
            # 100000) asked for terabytes and died in a 106-line out-of-memory traceback.
            raise ValueError(
                f"[model] dilation {self.model.dilation} with base_kernels "
                f"{self.model.base_kernels} spans {max(spans)} px, more than the {tile} px "
                f"tile ([preprocess] tile_size); a kernel must fit the tile "
                f"((kernel - 1) x dilation + 1 <= tile_size)")
        # A FOV-masked loss needs FOV planes in the records: the one config that trains
        # with it also makes vessel-preprocess (and vessel-run's preprocess stage) write them.
        if self.train.loss_mask == "fov" and not self.preprocess.fov_masks:
            object.__setattr__(self, "preprocess",
                               dataclasses.replace(self.preprocess, fov_masks=True))


def section_classes() -> dict[str, type]:
    """Section name -> its dataclass, in file order."""
    return {f.name: f.type if isinstance(f.type, type) else type(f.default)
            for f in dataclasses.fields(Config)}


# Keys of the reference's train_eval_infer.config that no code here reads: accepted in a
# file (one line each, once: "accepted for compatibility, has no effect"), refused by --set.
COMPATIBILITY_KEYS = {
    "model": ("input_normalize", "metrics", "generator"),
    "train": ("eval_dir", "image_datapath", "mask_datapath", "epoch_change_infer",
              "epoch_change_infer_dir", "epoch_change_tiledinfer_dir", "create_backup",
              "save_weights_only"),
    "eval": ("image_datapath", "mask_datapath", "output_dir"),
    "test": ("image_datapath", "mask_datapath", "output_dir"),
    "infer": ("images_dir", "output_dir", "merged_dir"),
    "tiledinfer": ("output_dir",),
    "segmentation": ("colorize", "black", "white", "blursize"),
    "image": ("color_converter", "gamma", "sharpening", "contrast_adjuster", "contrast_alpha",
              "contrast_beta", "reverse"),
    # Masks are binarised at one fixed threshold, grey > 127 (tiled_vessel_seg.imaging).
    "mask": ("blur", "blur_size", "binarize", "threshold"),
}

# (section, key) of a second name -> (section, key) of the one name it is read as.
ALIASES = {
    ("model", "image_width"): ("preprocess", "tile_size"),
    ("model", "image_height"): ("preprocess", "tile_size"),
    ("tiledinfer", "overlapping"): ("tiledinfer", "overlap"),
}
# Fields set by the reader from another key, never written to a file.
DERIVED_KEYS = {"model": ("image_width", "image_height")}
