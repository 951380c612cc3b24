"""Keras callback: after every epoch, one validation photograph segmented whole, shown in
TensorBoard (IMAGES tab) as its probability map and its error map, so a user watches
thin vessels appear and false positives go while the model trains.

    callback = ValidationImageSummary("im0005", photo, truth, "M/logs/validation_image",
                                      tile_size=128, overlap=32, scale=1)
    train.train(config, data_dir, model_dir, callbacks=[callback])

The photo is segmented at its native size through the tiled predictor (enlarged by the
model's scale in the graph, as `vessel-segment --input_scale native` does), with the
weights of the epoch just finished. Error map colours: inference/error_map.py (true
positives white, false positives red, false negatives blue). A failure is logged once
and never stops training.
"""
from __future__ import annotations

import keras
import numpy as np
from absl import logging

from tiled_vessel_seg import storage

LOG_SUBDIR = "validation_image"


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
        import tensorflow as tf
        from tiled_vessel_seg.inference import error_map, predictor
        from tiled_vessel_seg.trainer import model as model_lib
        if self._predictor is None:
            self._predictor = predictor.TiledPredictor(model_lib.inference_model(self.model),
                                                       **self._settings)
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
    from tiled_vessel_seg import datasets, sources
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


def from_dataset(config, data_dir: str, log_dir: str, source=None) -> list:
    """[ValidationImageSummary] of the first validation photo of the dataset in data_dir,
    writing to log_dir; [] when the dataset has no validation image or its photo cannot
    be found or read.

    config: the run's configs.schema.Config ([preprocess] tile_size, [tiledinfer]).
    source: the datasets.Source the dataset was made from; by default found again from
    the inputs recorded in its dataset_info.json.
    """
    from tiled_vessel_seg import imaging, sources
    from tiled_vessel_seg.tfrecords import dataset_info
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
