"""The Keras callbacks that run tiled inference while a model trains, and the one call
that builds them for a training run (vessel-train, vessel-run: `for_training`).

* `EpochChangeTiledInference` (`[train] epoch_change_tiledinfer`): after every epoch, a
  few whole images of `[tiledinfer] images_dir` segmented into
  M/epoch_change_tiledinfer/Epoch_{n}_{stem}.png, so a user sees the masks improve.
* `ValidationImageSummary`: after every epoch, the first validation photograph
  segmented whole, shown in TensorBoard (IMAGES tab, M/logs/validation_image) as its
  probability map and its error map (inference/error_map.py: true positives white,
  false positives red, false negatives blue).

They join the trainer and the tiled predictor, so they live here, with the commands that
wire stages: trainer/ imports nothing from inference/ (`train(..., callbacks=...)`
takes them), and inference/ nothing from trainer/. A failure in either is logged once
and never stops training.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tiled_vessel_seg import datasets, imaging, model_info, sources, storage
from tiled_vessel_seg.configs import schema
from tiled_vessel_seg.inference import error_map, segment
from tiled_vessel_seg.inference import input_scale as input_scale_lib
from tiled_vessel_seg.inference import predictor as predictor_lib
from tiled_vessel_seg.tfrecords import dataset_info
from tiled_vessel_seg.trainer import model as model_lib
from tiled_vessel_seg.trainer import train

OUTPUT_SUBDIR = "epoch_change_tiledinfer"  # under M: the per-epoch masks
LOG_SUBDIR = "validation_image"  # under M/logs (train.LOGS_DIR): the validation image


def for_training(config: schema.Config, data_dir: str, model_dir: str,
                 source=None) -> list:
    """Every tiled-inference callback of a training run on the dataset in data_dir,
    writing under model_dir: the per-epoch masks when `[train] epoch_change_tiledinfer`
    asks for them, and the TensorBoard validation image when the dataset's first
    validation photo can be found (source: the datasets.Source the dataset was made
    from; by default found again from its dataset_info.json)."""
    log_dir = storage.join(model_dir, train.LOGS_DIR, LOG_SUBDIR)
    return (from_config(config, model_dir)
            + from_dataset(config, data_dir, log_dir, source=source))


def from_config(config: schema.Config, model_dir: str) -> list:
    """The callbacks `[train] epoch_change_tiledinfer` asks for: [] when it is off (or
    [tiledinfer] images_dir is not set, which is said once), else one
    EpochChangeTiledInference writing under `model_dir`."""
    if not config.train.epoch_change_tiledinfer:
        return []
    if not config.tiledinfer.images_dir:
        logging.warning("epoch_change_tiledinfer: [tiledinfer] images_dir is not set; no "
                        "per-epoch masks")
        return []
    return [EpochChangeTiledInference(config, model_dir)]


class EpochChangeTiledInference(keras.callbacks.Callback):
    """After epoch n (1-based, as Keras prints it), writes
    model_dir/epoch_change_tiledinfer/Epoch_{n}_{stem}.png (0/255 masks) for the first
    config.train.num_infer_images images (sorted) of config.tiledinfer.images_dir.

    What the model is comes from its metadata, model_dir/model_info.json, as in
    vessel-segment: tile size, scale (a "native" input is enlarged by it), the training
    photos' sizes (input_scale auto), overlap and threshold; [tiledinfer] gives the
    tiling options (batch_size, blend, tta, input_scale). vessel-train writes
    model_info.json with the first best model; epochs that end before it exists write no
    masks (said once). The predictor is built once on self.model (its one-output
    inference view for a W-Net), so each epoch uses the current weights. An unusable
    images_dir is logged once and never stops training.
    """

    def __init__(self, config: schema.Config, model_dir: str):
        super().__init__()
        self.config = config
        self.model_dir = model_dir
        self.output_dir = storage.join(model_dir, OUTPUT_SUBDIR)
        self._predictor = None
        self._images = None
        self._said_no_info = False

    def _load_images(self):
        images_dir = self.config.tiledinfer.images_dir
        images = []
        if not images_dir:
            logging.warning("epoch_change_tiledinfer: [tiledinfer] images_dir is not set; "
                            "no per-epoch masks")
            return images
        files, _ = segment.expand_inputs([images_dir])
        for path in files[:self.config.train.num_infer_images]:
            try:
                images.append((imaging.image_stem(path), imaging.read_image(path)))
            except imaging.ImageReadError as e:
                logging.warning("epoch_change_tiledinfer: %s", e)
        if not images:
            logging.warning("epoch_change_tiledinfer: no readable image in %s", images_dir)
        return images

    def _build_predictor(self, info):
        t = self.config.tiledinfer
        model = model_lib.inference_model(self.model)
        tile = predictor_lib.model_tile_size(model) or info.tile_size

        def make(input_scale: str):
            return predictor_lib.TiledPredictor(
                model, tile_size=tile, overlap=info.overlap, batch_size=t.batch_size,
                blend=t.blend, tta=t.tta, threshold=info.threshold, scale=info.scale,
                input_scale=input_scale)

        return input_scale_lib.scaled_predictor(make, info, t.input_scale)

    def on_epoch_end(self, epoch, logs=None):
        if self._images is None:
            self._images = self._load_images()
        if not self._images:
            return
        if self._predictor is None:
            try:
                info = model_info.read_model_info(self.model_dir)
            except model_info.ModelDirError as e:
                if not self._said_no_info:
                    logging.warning("epoch_change_tiledinfer: no masks until the model's "
                                    "metadata exists (%s)", e)
                    self._said_no_info = True
                return
            self._predictor = self._build_predictor(info)
            storage.makedirs(self.output_dir)
        for stem, image in self._images:
            _, mask = self._predictor(image)
            path = storage.join(self.output_dir, f"Epoch_{epoch + 1}_{stem}.png")
            storage.write_bytes_atomic(path, imaging.encode_png(mask.numpy()))


class ValidationImageSummary(keras.callbacks.Callback):
    """Writes, at step = epoch number (1-based), TensorBoard images
    `validation/<id>/probability` ([1, H, W, 1] in [0, 1]) and `validation/<id>/errors`
    ([1, H, W, 3] uint8) to `log_dir`.

    photo: uint8 RGB [H, W, 3] at native size; truth: [H, W] mask (nonzero = vessel).
    tile_size, overlap, batch_size, blend, threshold: the tiled predictor's settings.
    scale: the training enlargement (the photo is enlarged by it in the graph).
    """

    def __init__(self, image_id: str, photo: np.ndarray, truth: np.ndarray, log_dir: str, *,
                 tile_size: int, overlap: int, scale: int, batch_size: int = 4,
                 blend: str = "gaussian", threshold: float = 0.5):
        super().__init__()
        self.image_id = image_id
        self.photo = photo
        self.truth = np.asarray(truth) != 0
        self.log_dir = log_dir
        self._settings = dict(tile_size=tile_size, overlap=overlap, batch_size=batch_size,
                              blend=blend, threshold=threshold, scale=scale,
                              input_scale="native")
        self._predictor = None
        self._writer = None
        self._failed = False

    def on_epoch_end(self, epoch, logs=None):
        if self._failed:
            return
        try:
            self._write(epoch + 1)
        except Exception as e:  # noqa: BLE001 - a picture must never stop training
            self._failed = True
            logging.warning("validation image for TensorBoard disabled: %s", e)

    def _write(self, step: int) -> None:
        if self._predictor is None:
            self._predictor = predictor_lib.TiledPredictor(
                model_lib.inference_model(self.model), **self._settings)
            storage.makedirs(self.log_dir)
            self._writer = tf.summary.create_file_writer(self.log_dir)
        probabilities, mask = self._predictor(self.photo)
        errors = error_map.error_map(mask.numpy(), self.truth)
        with self._writer.as_default():
            tf.summary.image(f"validation/{self.image_id}/probability",
                             probabilities[None, :, :, None], step=step,
                             description="vessel probability of the whole photo")
            tf.summary.image(f"validation/{self.image_id}/errors", errors[None], step=step,
                             description="white: vessel found; red: false vessel; blue: "
                                         "missed vessel")
        self._writer.flush()


def dataset_source(parameters: dict):
    """The datasets.Source a dataset was made from, from its dataset_info.json
    parameters (vessel-preprocess and vessel-run record the input flags there); None if
    they do not say."""
    several = sources.from_parameters(parameters)  # several datasets: a list of sources
    if several:
        return several
    root = parameters.get("root") or parameters.get("stare_dir")
    source = datasets.Source(
        root=root, layout=parameters.get("layout") or ("stare" if root else None),
        images_dir=parameters.get("images_dir"), masks_dir=parameters.get("masks_dir"),
        manifest=parameters.get("manifest"), fov_dir=parameters.get("fov_dir"))
    try:
        source.check()
    except ValueError:
        return None
    return source


def from_dataset(config: schema.Config, data_dir: str, log_dir: str, source=None) -> list:
    """[ValidationImageSummary] of the first validation photo of the dataset in data_dir,
    writing to log_dir; [] when the dataset has no validation image or its photo cannot
    be found or read.

    config: the run's configs.schema.Config ([preprocess] tile_size, [tiledinfer]).
    source: the datasets.Source the dataset was made from; by default found again from
    the inputs recorded in its dataset_info.json.
    """
    info = dataset_info.read_dataset_info(data_dir)
    valid = info.splits["valid"].image_ids if "valid" in info.splits else []
    source = source or dataset_source(info.parameters.values)
    if not valid or source is None:
        return []
    try:
        pairs, _ = sources.find_pairs(source)
        pair = next((p for p in pairs if p.image_id == valid[0]), None)
        if pair is None:
            return []
        photo, truth = imaging.read_image(pair.image_path), imaging.read_mask(pair.mask_path)
    except (ValueError, OSError) as e:  # InputDirError, ImageReadError, StorageError
        logging.warning("no validation image for TensorBoard: %s", e)
        return []
    tiled = config.tiledinfer
    return [ValidationImageSummary(
        pair.image_id, photo, truth, log_dir, tile_size=config.preprocess.tile_size,
        overlap=tiled.overlap, scale=info.parameters.scale, batch_size=tiled.batch_size,
        blend=tiled.blend, threshold=tiled.threshold)]
