"""Input-pipeline benchmark: prints figures (not a test), measured side by side in one run.

  1. tiles/s of `make_dataset` alone (training mode: shuffle, parse, PNG decode, batch),
     total and per core; target >= 200 tiles/s per core at 512x512.
  2. step time of a small U-Net fed by the streaming pipeline vs the same batches held in
     memory; target ratio <= 1.05.
  3. peak RSS of a short vessel-train run over 1x and over 10x as many shards (copies of
     the same shards), each in its own process; target <= 1.1x.

    python benchmarks/input_bench.py [--tile_size 512] [--tiles 96] [--steps 30]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def pipeline_throughput(data_dir: str, batch: int, seconds: float) -> tuple[float, float]:
    """(tiles per wall second, tiles per CPU second of this process).

    Tiles per CPU second is the per-core rate, and holds when other jobs share the cores.
    """
    from tiled_vessel_seg.tfrecords import reader
    ds = reader.make_dataset(data_dir, reader.InputConfig("train", batch, training=True,
                                                          seed=0))
    iterator = iter(ds)
    for _ in range(3):  # warm-up: tracing, buffers
        next(iterator)
    tiles, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        next(iterator)
        tiles += batch
    return (tiles / (time.perf_counter() - start),
            tiles / (time.process_time() - cpu_start))


def _small_model(tile: int):
    import keras

    from tiled_vessel_seg.configs import load_config
    from tiled_vessel_seg import keras_objects
    from tiled_vessel_seg.trainer import model
    config = load_config(None, [f"model.image_height={tile}", f"model.image_width={tile}",
                                "model.base_filters=8", "model.num_layers=4",
                                "model.base_kernels=(3,3)", "model.dilation=(1,1)"])
    net = model.build_unet(config.model)
    net.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras_objects.BceDiceLoss())
    return net


class _StepTimer:
    def __init__(self):
        import keras

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(inner, epoch, logs=None):
                inner.start = time.perf_counter()

            def on_epoch_end(inner, epoch, logs=None):
                self.epoch_seconds.append(time.perf_counter() - inner.start)
        self.epoch_seconds: list[float] = []
        self.callback = Timer()


def streaming_vs_memory(data_dir: str, tile: int, batch: int, steps: int) -> tuple[float, float]:
    """(streaming s/step, in-memory s/step), each the faster of 2 timed epochs after a warm-up."""
    import numpy as np
    import tensorflow as tf

    from tiled_vessel_seg.tfrecords import reader
    stream = reader.make_dataset(data_dir, reader.InputConfig("train", batch, training=True,
                                                              seed=0))
    held = list(stream.take(steps).as_numpy_iterator())
    images = np.concatenate([b[0] for b in held])
    masks = np.concatenate([b[1] for b in held])
    memory = tf.data.Dataset.from_tensor_slices((images, masks)).batch(
        batch, drop_remainder=True).repeat().prefetch(tf.data.AUTOTUNE)
    results = []
    for data in (stream, memory):
        timer = _StepTimer()
        net = _small_model(tile)
        net.fit(data, steps_per_epoch=steps, epochs=3, verbose=0, callbacks=[timer.callback],
                shuffle=False)
        results.append(min(timer.epoch_seconds[1:]) / steps)
    return results[0], results[1]


def replicate_shards(src: str, dst: str, copies: int) -> None:
    """dst: src's dataset with every train shard copied `copies` times (listed in the info)."""
    from tiled_vessel_seg.tfrecords import dataset_info as dataset_info_lib
    shutil.copytree(src, dst)
    info = dataset_info_lib.read_dataset_info(dst)
    train = info.splits["train"]
    names = list(train.shards)
    for k in range(1, copies):
        for name in train.shards:
            copy = name.replace(".tfrecord", f"-copy{k}.tfrecord")
            shutil.copy(os.path.join(dst, name), os.path.join(dst, copy))
            names.append(copy)
    train.shards, train.records = names, train.records * copies
    dataset_info_lib.write_dataset_info(dst, info)


_RSS_SCRIPT = """
import json, resource, sys
from tiled_vessel_seg.configs import load_config
from tiled_vessel_seg.trainer import train
data_dir, model_dir, tile, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
config = load_config(None, [f"model.image_height={tile}", f"model.image_width={tile}",
    "model.base_filters=8", "model.num_layers=4", "model.base_kernels=(3,3)",
    "model.dilation=(1,1)", "train.epochs=2", f"train.steps_per_epoch={steps}",
    "train.batch_size=4", "train.validation_steps=2"])
train.train(config, data_dir, model_dir, precision="float32", verbose=0)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peak_rss_mb(data_dir: str, model_dir: str, tile: int, steps: int) -> float:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, data_dir, model_dir, str(tile),
                             str(steps)], env=env, cwd=REPO, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile_size", type=int, default=512)
    parser.add_argument("--tiles", type=int, default=96, help="train tiles written")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput window")
    parser.add_argument("--model_tile", type=int, default=128,
                        help="tile side of the step-time and RSS runs (small model on CPU)")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed epoch")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from tiled_vessel_seg.trainer.fake_data import write_fake_dataset
    work = tempfile.mkdtemp(prefix="input_bench_")
    try:
        cores = os.cpu_count() or 1
        big = os.path.join(work, "big")
        t0 = time.perf_counter()
        write_fake_dataset(big, tile_size=args.tile_size,
                           tiles={"train": args.tiles, "valid": 8}, shards=args.shards)
        print(f"wrote {args.tiles} {args.tile_size}px tiles in {args.shards} gzip shards "
              f"({time.perf_counter() - t0:.1f}s)")
        rate, per_cpu_second = pipeline_throughput(big, args.batch, args.seconds)
        print(f"[1] input pipeline alone ({args.tile_size}px, batch {args.batch}): {rate:.0f} "
              f"tiles/s wall on {cores} cores ({rate / cores:.0f}/core); {per_cpu_second:.0f} "
              f"tiles per CPU-second (per-core rate, load-independent); target >= 200/core")
        print(f"    load average during the run: {os.getloadavg()[0]:.1f}")

        small = os.path.join(work, "small")
        write_fake_dataset(small, tile_size=args.model_tile,
                           tiles={"train": 64, "valid": 8}, shards=args.shards)
        streamed, in_memory = streaming_vs_memory(small, args.model_tile, args.batch, args.steps)
        print(f"[2] small U-Net step ({args.model_tile}px, batch {args.batch}): streaming "
              f"{streamed * 1e3:.1f} ms, in memory {in_memory * 1e3:.1f} ms, ratio "
              f"{streamed / in_memory:.3f}; target <= 1.05")

        ten = os.path.join(work, "small_x10")
        replicate_shards(small, ten, 10)
        rss1 = peak_rss_mb(small, os.path.join(work, "m1"), args.model_tile, args.steps)
        rss10 = peak_rss_mb(ten, os.path.join(work, "m10"), args.model_tile, args.steps)
        print(f"[3] peak RSS of vessel-train: {args.shards} shards {rss1:.0f} MB, "
              f"{10 * args.shards} shards {rss10:.0f} MB, ratio {rss10 / rss1:.3f}; "
              f"target <= 1.1")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
