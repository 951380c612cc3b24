"""Where the second core goes in CPU training: cores busy and tiles/s, side by side.

Each variant trains the stare_cpu.config U-Net (or any --config) for --steps steps on the
training shards of a dataset written by vessel-preprocess, in its own process (thread
settings only take effect in a fresh process), and prints:

  tiles/s      training tiles per wall second (after a warm-up of --warmup steps)
  cores busy   (user + system CPU seconds) / wall seconds of the timed steps
  CPU ms/tile  CPU cost per training tile

Variants: the default (what vessel-train does), steps_per_execution (several steps per
tf.function call: the Python/Keras per-step overhead is paid once), a larger batch,
explicit thread settings, and XLA (jit_compile: fuses the many tiny element-wise ops of a
small model - batch norm, activations, the optimizer's per-variable updates - which
Keras leaves off on CPU-only machines). Figures are noisy when other jobs share the cores: run
the variants side by side in one invocation and compare ratios.

    python benchmarks/train_cpu_bench.py --data_dir runs/h3/s_unet_e30/data \
        --config configs/stare_cpu.config --steps 150
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

VARIANTS = {
    "default": {},
    "steps_per_execution=10": {"steps_per_execution": 10},
    "batch=16": {"batch": 16},
    "batch=16+steps_per_execution=10": {"batch": 16, "steps_per_execution": 10},
    "intra=2/inter=1": {"intra": 2, "inter": 1},
    "intra=1/inter=1": {"intra": 1, "inter": 1},
    "jit_compile (XLA)": {"jit_compile": True},
    "jit_compile+steps_per_execution=10": {"jit_compile": True, "steps_per_execution": 10},
    "deterministic (--deterministic)": {"deterministic": True},
    "oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)": {"env": {"TF_ENABLE_ONEDNN_OPTS": "0"}},
    "intra=3/inter=1": {"intra": 3, "inter": 1},
    "input pipeline only": {"input_only": True},
    "robust augmentation (the config's [train] augment_*)": {"robust": True},
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(config_path: str, data_dir: str, steps: int, warmup: int, variant: dict) -> dict:
    import tensorflow as tf
    if "intra" in variant:
        tf.config.threading.set_intra_op_parallelism_threads(variant["intra"])
        tf.config.threading.set_inter_op_parallelism_threads(variant["inter"])
    import keras
    if variant.get("deterministic"):  # what vessel-train --deterministic turns on
        keras.utils.set_random_seed(0)
        tf.config.experimental.enable_op_determinism()

    from tiled_vessel_seg.configs import load_config
    from tiled_vessel_seg.tfrecords import reader
    from tiled_vessel_seg.trainer import losses, metrics, model as model_lib, schedules
    config = load_config(config_path)
    batch = variant.get("batch", config.train.batch_size)
    tile = (config.model.image_height, config.model.image_width)
    from tiled_vessel_seg.tfrecords import robust_augment
    robust = robust_augment.from_train_config(config.train) if variant.get("robust") else None
    data = reader.make_dataset(data_dir, reader.InputConfig(
        "train", batch, training=True, seed=0, tile_shape=tile, robust=robust,
        deterministic=True if variant.get("deterministic") else None))
    if variant.get("input_only"):
        iterator = iter(data)
        for _ in range(warmup):
            next(iterator)
        start, cpu = time.perf_counter(), _cpu()
        for _ in range(steps):
            next(iterator)
    else:
        keras.utils.set_random_seed(0)
        net = model_lib.build_model(config.model)
        net.compile(optimizer=keras.optimizers.Adam(schedules.learning_rate(config, 100),
                                                    clipvalue=config.model.clipvalue),
                    loss=losses.get_loss(config.model.loss),
                    metrics=metrics.segmentation_metrics(),
                    steps_per_execution=variant.get("steps_per_execution", 1),
                    jit_compile=variant.get("jit_compile", False))
        net.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0)
        start, cpu = time.perf_counter(), _cpu()
        net.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    wall, used = time.perf_counter() - start, _cpu() - cpu
    tiles = steps * batch
    return {"tiles_per_s": tiles / wall, "cores_busy": used / wall,
            "cpu_ms_per_tile": 1000 * used / tiles, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.path.join(REPO, "configs", "stare_cpu.config"))
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated subset of: " + ", ".join(VARIANTS))
    parser.add_argument("--_one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._one:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        print(json.dumps(measure(args.config, args.data_dir, args.steps, args.warmup,
                                 VARIANTS[args._one])))
        return
    print(f"{'variant':34s} {'tiles/s':>8s} {'cores busy':>10s} {'CPU ms/tile':>11s}")
    for name in args.variants.split(","):
        out = subprocess.run(
            [sys.executable, __file__, "--config", args.config, "--data_dir", args.data_dir,
             "--steps", str(args.steps), "--warmup", str(args.warmup), "--_one", name],
            capture_output=True, text=True, check=True,
            env={**os.environ, **VARIANTS[name].get("env", {})})
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name:34s} {r['tiles_per_s']:8.1f} {r['cores_busy']:10.2f} "
              f"{r['cpu_ms_per_tile']:11.2f}", flush=True)


if __name__ == "__main__":
    main()
