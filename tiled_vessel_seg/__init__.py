"""tiled_vessel_seg: retinal vessel segmentation of large fundus photographs.

The repository keeps one folder per stage (beam_jobs, tfrecords, trainer, inference,
pipeline, configs, synthetic); setup.py installs each of them under this package, so
imports read `from tiled_vessel_seg.trainer import model` whatever folders the current
working directory holds.

Importing this package registers the model's custom Keras objects (loss and metrics,
under the package name "tiled_vessel_seg"), so a notebook can load a trained model with a
plain `keras.models.load_model(path)`.
"""
__version__ = "0.2.0"
