"""Keras callback: segment a few whole images after every epoch (`[train]
epoch_change_tiledinfer`), so a user sees the masks improve during training."""
from __future__ import annotations

import keras
from absl import logging

from tiled_vessel_seg import storage
from tiled_vessel_seg.configs import schema

OUTPUT_SUBDIR = "epoch_change_tiledinfer"


class EpochChangeTiledInference(keras.callbacks.Callback):
    """After epoch n (1-based, as Keras prints it), writes
    model_dir/epoch_change_tiledinfer/Epoch_{n}_{stem}.png (0/255 masks) for the first
    config.train.num_infer_images images (sorted) of config.tiledinfer.images_dir.

    Tiling follows [tiledinfer] (overlap, batch_size, blend, tta, threshold,
    input_scale); a "native" input is enlarged by [preprocess] scale; the tile size is
    the model's input size (else [model] image_height). The predictor is built once on
    self.model, so each epoch uses the current weights. An unusable images_dir is logged
    once and never stops training.
    """

    def __init__(self, config: schema.Config, model_dir: str):
        super().__init__()
        self.config = config
        self.model_dir = model_dir
        self.output_dir = storage.join(model_dir, OUTPUT_SUBDIR)
        self._predictor = None
        self._images = None

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

    def _build_predictor(self):
        from tiled_vessel_seg.inference import predictor as predictor_lib
        t = self.config.tiledinfer
        tile = predictor_lib.model_tile_size(self.model) or self.config.model.image_height

        def make(input_scale: str):
            return predictor_lib.TiledPredictor(
                self.model, tile_size=tile, overlap=t.overlap, batch_size=t.batch_size,
                blend=t.blend, tta=t.tta, threshold=t.threshold,
                scale=self.config.preprocess.scale, input_scale=input_scale)

        if t.input_scale != "auto":
            return make(t.input_scale)
        from tiled_vessel_seg import model_info
        from tiled_vessel_seg.inference import input_scale as input_scale_lib
        try:  # the training photos' sizes, when train() has written model_info.json
            sizes = model_info.read_model_info(self.model_dir).source_sizes
        except model_info.ModelDirError:
            sizes = []
        return input_scale_lib.AutoScalePredictor(make, self.config.preprocess.scale, sizes)

    def on_epoch_end(self, epoch, logs=None):
        from tiled_vessel_seg import imaging, storage
        if self._images is None:
            self._images = self._load_images()
        if not self._images:
            return
        if self._predictor is None:
            self._predictor = self._build_predictor()
            storage.makedirs(self.output_dir)
        for stem, image in self._images:
            _, mask = self._predictor(image)
            path = storage.join(self.output_dir, f"Epoch_{epoch + 1}_{stem}.png")
            storage.write_bytes_atomic(path, imaging.encode_png(mask.numpy()))
