"""Benchmark of whole-image tiled inference on one 3500x3025 photo (figures, not a test).

  python benchmarks/infer_bench.py [--configs small,reference] [--image PATH]

For each model config (random weights) and each method, in a fresh subprocess so that
peak RSS is the method's own:
  a  this project's TiledPredictor: one tf.function (pad, tiles sliced per chunk, batched tiles
     in a tf.while_loop, gaussian blending), overlap 64;
  b  a re-creation of the reference tool's loop: 42 tiles of 512 with 64-px margins
     cropped to 640x640 (PIL) and resized to 512, one `model.predict` per tile, resized
     back and pasted, then ANDed with a whole-image prediction resized to 512;
  c  pure model compute: one batched `model.predict` over the same tiles as (a), already
     extracted and in float32 (c_fn: the same in chunks through a tf.function).
Prints wall and process-CPU seconds per image (best of --repeats after a warm-up call),
a/c (tiling overhead), b/a (speed-up) and peak RSS. On a machine shared with other jobs
compare the CPU figures: wall time then mostly measures the neighbours.
Configs: small = U-Net base_filters 8, num_layers 4, 3x3 kernels, no dilation;
reference = the reference defaults (base 16, 9x9 kernels, 8 levels, dilation 3: 125 M
parameters; minutes per method on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_IMAGE = os.path.join(os.path.dirname(REPO), "shared", "data", "stare", "enlarged",
                             "images", "im0001.jpg")
TILE, OVERLAP, MARGIN = 512, 64, 64

CONFIGS = {
    "small": dict(base_filters=8, num_layers=4, base_kernels=(3, 3), dilation=(1, 1)),
    "reference": dict(),
}


def build_model(name: str):
    from tiled_vessel_seg.configs.schema import ModelConfig
    from tiled_vessel_seg.trainer.model import build_unet
    import keras
    keras.utils.set_random_seed(0)
    return build_unet(ModelConfig(dropout_rate=0.0, **CONFIGS[name]))


def load_image(path: str):
    import numpy as np
    if os.path.exists(path):
        from tiled_vessel_seg.imaging import read_image
        return read_image(path)
    print(f"(no {path}: using a random 3500x3025 image)", file=sys.stderr)
    return np.random.default_rng(0).integers(0, 256, (3025, 3500, 3), dtype=np.uint8)


def timed(fn, repeats: int) -> tuple[float, float]:
    """(wall s, process CPU s) of one call, each the best of `repeats` after a warm-up.
    CPU time (all threads) is the figure to compare on a machine shared with other jobs."""
    fn()  # warm-up: tracing, first-call allocations
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu


def method_a(model, image, batch_size):
    from tiled_vessel_seg.inference.predictor import TiledPredictor
    predictor = TiledPredictor(model, overlap=OVERLAP, batch_size=batch_size, blend="gaussian")
    return lambda: predictor(image)[0].numpy()


def extracted_tiles(image):
    import numpy as np
    import tensorflow as tf
    from tiled_vessel_seg.inference import tiling
    h, w = image.shape[:2]
    ny, top, bottom = tiling.tile_grid(tf.constant(h), TILE, OVERLAP)
    nx, left, right = tiling.tile_grid(tf.constant(w), TILE, OVERLAP)
    padded = tiling.reflect_pad(tf.constant(image), ((top, bottom), (left, right)))
    tiles = tiling.extract_tiles(padded, TILE, OVERLAP).numpy()
    return tiles.astype(np.float32) / 255.0


def method_c(model, image, batch_size):
    tiles = extracted_tiles(image)
    return lambda: model.predict(tiles, batch_size=batch_size, verbose=0)


def method_c_fn(model, image, batch_size):
    import tensorflow as tf
    tiles = extracted_tiles(image)
    call = tf.function(lambda x: model(x, training=False))

    def run():
        for i in range(0, len(tiles), batch_size):
            call(tiles[i:i + batch_size]).numpy()
    return run


def method_b(model, image, batch_size):
    """The reference tool's per-tile loop (re-created; see the module docstring)."""
    import numpy as np
    from PIL import Image
    from tiled_vessel_seg.imaging import MASK_THRESHOLD
    photo = Image.fromarray(image)
    width, height = photo.size
    cols, rows = -(-width // TILE), -(-height // TILE)          # 7 x 6 = 42 tiles
    context = TILE + 2 * MARGIN

    def predict_one(pil):
        x = np.asarray(pil.resize((TILE, TILE), Image.BICUBIC), np.float32)[None] / 255.0
        return model.predict(x, verbose=0)[0, ..., 0]

    def run():
        merged = Image.new("L", (cols * TILE, rows * TILE))
        for r in range(rows):
            for c in range(cols):
                box = (c * TILE - MARGIN, r * TILE - MARGIN,
                       c * TILE + TILE + MARGIN, r * TILE + TILE + MARGIN)
                crop = photo.crop(box)                          # 640 x 640, black outside
                pred = predict_one(crop)
                mask = Image.fromarray((pred > 0.5).astype(np.uint8) * 255)
                mask = mask.resize((context, context), Image.BICUBIC)
                merged.paste(mask.crop((MARGIN, MARGIN, MARGIN + TILE, MARGIN + TILE)),
                             (c * TILE, r * TILE))
        merged = np.asarray(merged.crop((0, 0, width, height))) > MASK_THRESHOLD
        whole = predict_one(photo)
        whole = Image.fromarray((whole > 0.5).astype(np.uint8) * 255).resize((width, height))
        return merged & (np.asarray(whole) > MASK_THRESHOLD)
    return run


METHODS = {"a": method_a, "b": method_b, "c": method_c, "c_fn": method_c_fn}


def run_stage(config: str, method: str, image_path: str, batch_size: int, repeats: int):
    image = load_image(image_path)
    model = build_model(config)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    seconds, cpu = timed(METHODS[method](model, image, batch_size), repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_rss_gib": peak,
                      "base_rss_gib": base_rss, "params": model.count_params(),
                      "image": list(image.shape)}))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="small", help="comma list of: small, reference")
    parser.add_argument("--methods", default="a,c,c_fn,b")
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--stage", help=argparse.SUPPRESS)  # internal: config:method
    args = parser.parse_args()
    if args.stage:
        config, method = args.stage.split(":")
        return run_stage(config, method, args.image, args.batch_size, args.repeats)

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    print(f"image {args.image}, tile {TILE}, overlap {OVERLAP}, batch {args.batch_size}, "
          f"best of {args.repeats} after a warm-up; {os.cpu_count()} CPUs")
    for config in args.configs.split(","):
        results = {}
        for method in args.methods.split(","):
            out = subprocess.run(
                [sys.executable, __file__, "--stage", f"{config}:{method}", "--image",
                 args.image, "--batch_size", str(args.batch_size), "--repeats",
                 str(args.repeats)], capture_output=True, text=True, env=env, cwd=REPO)
            if out.returncode:
                sys.exit(f"{config}:{method} failed:\n{out.stderr[-3000:]}")
            results[method] = json.loads(out.stdout.strip().splitlines()[-1])
        params = next(iter(results.values()))["params"]
        print(f"\n[{config}] {CONFIGS[config] or 'reference defaults'}, {params:,} parameters")
        print(f"  {'method':<44} {'s/image':>9} {'CPU s':>7} {'peak RSS GiB':>13} "
              f"{'(after build)':>14}")
        names = {"a": "a  TiledPredictor (one graph)", "b": "b  reference per-tile loop",
                 "c": "c  batched model.predict on tiles",
                 "c_fn": "c_fn  model in tf.function over tile chunks"}
        for method, r in results.items():
            print(f"  {names[method]:<44} {r['seconds']:>9.2f} {r['cpu']:>7.2f} "
                  f"{r['peak_rss_gib']:>13.2f} {r['base_rss_gib']:>14.2f}")
        if "a" in results:
            a = results["a"]
            for key in ("c", "c_fn"):
                if key in results:
                    other = results[key]
                    print(f"  a/{key} (tiling overhead) = {a['seconds'] / other['seconds']:.3f}"
                          f" wall, {a['cpu'] / other['cpu']:.3f} CPU"
                          + ("   target <= 1.05" if key == "c" else ""))
            if "b" in results:
                b = results["b"]
                print(f"  b/a (speed-up vs reference loop) = {b['seconds'] / a['seconds']:.2f} "
                      f"wall, {b['cpu'] / a['cpu']:.2f} CPU   target >= 5 for the small model")


if __name__ == "__main__":
    main()
