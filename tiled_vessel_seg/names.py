"""The names the stages share, defined once: file names, split names, record schema
versions, strategy and precision choices, the Keras package of the custom objects.

Ground floor: plain constants, no imports, so any module (a CLI answering --help, the
config schema, the Beam job, the trainer) can use them for free.
"""
from __future__ import annotations

# Record schema (tfrecords/schema.py describes the features of each version).
SCHEMA_VERSION = 2  # what the preprocessing job writes
READABLE_SCHEMA_VERSIONS = (1, 2)  # what the reader, trainer and model dirs accept

# Splits of a dataset, in the order every tool lists them.
SPLIT_NAMES = ("train", "valid", "test")

# A dataset directory (tfrecords/dataset_info.py).
DATASET_INFO_FILE = "dataset_info.json"

# A model directory (model_info.py): the info file and the default model file name.
MODEL_INFO_FILE = "model_info.json"
MODEL_FILE = "best_model.keras"
MODEL_EXTENSION = ".keras"  # the only model format loaded (Keras' safe_mode needs it)

# Distribution strategies and precision policies ([train] strategy, vessel-train
# --strategy / --precision; trainer/strategy.py builds them).
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")

# The package name under which the custom Keras objects are registered: a saved .keras
# file names them "vessel>BceDiceLoss", ... (tiled_vessel_seg/keras_objects.py).
KERAS_PACKAGE = "vessel"
