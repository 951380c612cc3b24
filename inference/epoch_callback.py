"""Keras callback: segment a few whole images after every epoch (`[train]
epoch_change_tiledinfer`), so a user sees the masks improve during training.

The trainer does not import inference: whoever calls `trainer.train.train` (vessel-train,
vessel-run) passes `from_config(config, model_dir)` as its extra callbacks.
"""
from __future__ import annotations

import keras
from absl import logging

from tiled_vessel_seg import storage
from tiled_vessel_seg.configs import schema

OUTPUT_SUBDIR = "epoch_change_tiledinfer"


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
        from tiled_vessel_seg import imaging
        from tiled_vessel_seg.inference import segment
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
        from tiled_vessel_seg.inference import input_scale as input_scale_lib
        from tiled_vessel_seg.inference import predictor as predictor_lib
        from tiled_vessel_seg.trainer import model as model_lib
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
        from tiled_vessel_seg import imaging, model_info, storage
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
