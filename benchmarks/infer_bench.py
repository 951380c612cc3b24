"""Benchmark of whole-image tiled inference on one 3500x3025 photo (figures, not a test).

  python benchmarks/infer_bench.py [--configs small,reference] [--methods ...] [--image PATH]

For each model config (random weights) and each method, in a fresh subprocess so that
peak RSS is the method's own:
  a        this project's TiledPredictor (one tf.function: pad, tiles, batched model calls in
           a tf.while_loop, gaussian blending), overlap 64 with a 32 px reflected margin
           (56 tiles at 3500x3025), tiles cut by slices (the CPU default);
  a_patch  the same with --tiler extract_patches (the design's op, the GPU default);
  a_fit    the same with --min_overlap 8: per image the smallest grid whose tiles overlap
           by >= 8 px (42 tiles at 3500x3025): the tools' default grid since issue 19, so
           a_fit vs b is "reference-size inference with the default flags" (issue 19's
           targets: <= 0.7x b's wall time, <= 0.9x its CPU time per image);
  b        a re-creation of the reference tool's loop: 42 tiles of 512 with 64-px margins
           cropped to 640x640 (PIL) and resized to 512, one `model.predict` per tile,
           resized back and pasted, then ANDed with a whole-image prediction resized to 512;
  c        pure model compute: one batched `model.predict` over the same tiles as (a),
           already extracted and in float32 (c_fn: the same in chunks through a tf.function);
  s        `vessel-segment` itself (the console tool in its own process, default flags plus
           --min_overlap 8) on the image written to a file, the model saved as a model dir:
           what a user waits for, loading and tracing included.
Prints wall and process-CPU seconds per image (a, b, c: one timed call after a warm-up
call on a 600x600 crop, which traces the graph; `--repeats` for more), the tile count,
a/c (tiling overhead), a_fit vs b (per-image time against the reference loop), the
predictor's and vessel-segment's peak RSS. On a machine shared with other jobs compare
the CPU figures: wall time then mostly measures the neighbours.
Configs: small = U-Net base_filters 8, num_layers 4, 3x3 kernels, no dilation;
reference = the reference defaults (base 16, 9x9 kernels, 8 levels, dilation 3: 125 M
parameters; minutes per method on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_IMAGE = os.path.join(os.path.dirname(REPO), "shared", "data", "stare", "enlarged",
                             "images", "im0001.jpg")
TILE, OVERLAP, MARGIN, MIN_OVERLAP = 512, 64, 64, 8

CONFIGS = {
    "small": dict(base_filters=8, num_layers=4, base_kernels=(3, 3), dilation=(1, 1)),
    "reference": dict(),
}
NAMES = {"a": "a  TiledPredictor, overlap 64 (slices)",
         "a_patch": "a_patch  the same, extract_patches",
         "a_fit": f"a_fit  TiledPredictor, min_overlap {MIN_OVERLAP}",
         "b": "b  reference per-tile loop",
         "c": "c  batched model.predict on a's tiles",
         "c_fn": "c_fn  model in tf.function over a's tiles",
         "s": f"s  vessel-segment --min_overlap {MIN_OVERLAP} (own process)"}


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


def timed(fn, warm_up, repeats: int) -> tuple[float, float]:
    """(wall s, process CPU s) of one call, each the best of `repeats`, after `warm_up()`
    (tracing and first-call allocations). CPU time (all threads) is the figure to
    compare on a machine shared with other jobs."""
    warm_up()
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu


def tile_count(image, fitted: bool) -> int:
    import tensorflow as tf
    from tiled_vessel_seg.inference import tiling
    grid = tiling.fitted_grid if fitted else tiling.tile_grid
    overlap = MIN_OVERLAP if fitted else OVERLAP
    h, w = image.shape[:2]
    return int(grid(tf.constant(h), TILE, overlap)[0]) * int(grid(tf.constant(w), TILE, overlap)[0])


def predictor_method(**options):
    def method(model, image, batch_size):
        from tiled_vessel_seg.inference.predictor import TiledPredictor
        predictor = TiledPredictor(model, batch_size=batch_size, blend="gaussian", **options)
        return (lambda: predictor(image)[0].numpy(),
                lambda: predictor(image[:600, :600])[0].numpy(),
                tile_count(image, "min_overlap" in options))
    return method


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
    return (lambda: model.predict(tiles, batch_size=batch_size, verbose=0),
            lambda: model.predict(tiles[:1], batch_size=batch_size, verbose=0), len(tiles))


def method_c_fn(model, image, batch_size):
    import tensorflow as tf
    tiles = extracted_tiles(image)
    call = tf.function(lambda x: model(x, training=False))

    def run():
        for i in range(0, len(tiles), batch_size):
            call(tiles[i:i + batch_size]).numpy()
    return run, lambda: call(tiles[:batch_size]).numpy(), len(tiles)


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
    return run, lambda: predict_one(photo), rows * cols + 1


METHODS = {"a": predictor_method(overlap=OVERLAP, tiler="slices"),
           "a_patch": predictor_method(overlap=OVERLAP, tiler="extract_patches"),
           "a_fit": predictor_method(min_overlap=MIN_OVERLAP, tiler="slices"),
           "b": method_b, "c": method_c, "c_fn": method_c_fn}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def run_stage(config: str, method: str, image_path: str, batch_size: int, repeats: int):
    image = load_image(image_path)
    model = build_model(config)
    base_rss = peak_rss_gib()
    run, warm_up, tiles = METHODS[method](model, image, batch_size)
    seconds, cpu = timed(run, warm_up, repeats)
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_rss_gib": peak_rss_gib(),
                      "base_rss_gib": base_rss, "params": model.count_params(),
                      "tiles": tiles, "image": list(image.shape)}))


def save_stage(config: str, model_dir: str):
    """Saves the config's model (same seed as the other methods) as a model dir."""
    from tiled_vessel_seg import model_info
    model = build_model(config)
    os.makedirs(model_dir, exist_ok=True)
    model.save(os.path.join(model_dir, model_info.MODEL_FILE))
    model_info.write_model_info(model_dir, model_info.ModelInfo(
        tile_size=TILE, scale=5, overlap=OVERLAP))
    print(json.dumps({"params": model.count_params()}))


def run_segment_tool(model_dir: str, image_path: str, batch_size: int, env: dict) -> dict:
    """vessel-segment on one image in its own process: wall, CPU and peak RSS of that
    process (the only child waited for while it runs)."""
    work = tempfile.mkdtemp(prefix="infer_bench_s_")
    try:
        photo = os.path.join(work, "photo" + os.path.splitext(image_path)[1])
        shutil.copy(image_path, photo)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "tiled_vessel_seg.inference.cli", "--model_dir", model_dir,
             "--input", photo, "--output_dir", os.path.join(work, "out"),
             "--input_scale", "enlarged", "--batch_size", str(batch_size),
             "--min_overlap", str(MIN_OVERLAP)],
            capture_output=True, text=True, env=env, cwd=REPO)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if out.returncode:
            raise RuntimeError(f"vessel-segment failed:\n{out.stderr[-3000:]}")
        return {"seconds": seconds,
                "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
                # ru_maxrss of children is the largest child's: this one, the biggest so far
                "peak_rss_gib": after.ru_maxrss / 2 ** 20, "tiles": None}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="small", help="comma list of: small, reference")
    parser.add_argument("--methods", default="a,a_patch,a_fit,c,b,s",
                        help=f"comma list of: {', '.join(NAMES)}")
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--stage", help=argparse.SUPPRESS)  # internal: config:method
    parser.add_argument("--save", help=argparse.SUPPRESS)   # internal: config:model_dir
    args = parser.parse_args()
    if args.stage:
        config, method = args.stage.split(":")
        return run_stage(config, method, args.image, args.batch_size, args.repeats)
    if args.save:
        config, model_dir = args.save.split(":", 1)
        return save_stage(config, model_dir)

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    print(f"image {args.image}, tile {TILE}, batch {args.batch_size}, one timed call after a "
          f"warm-up; {os.cpu_count()} CPUs shared with other jobs, load average "
          f"{os.getloadavg()[0]:.1f} at the start")
    for config in args.configs.split(","):
        results = {}
        for method in args.methods.split(","):
            if method == "s":
                model_dir = tempfile.mkdtemp(prefix="infer_bench_model_")
                try:
                    saved = subprocess.run([sys.executable, __file__, "--save",
                                            f"{config}:{model_dir}"],
                                           capture_output=True, text=True, env=env, cwd=REPO)
                    if saved.returncode:
                        sys.exit(f"{config}: saving the model failed:\n{saved.stderr[-3000:]}")
                    results[method] = run_segment_tool(model_dir, args.image, args.batch_size,
                                                       env)
                finally:
                    shutil.rmtree(model_dir, ignore_errors=True)
            else:
                out = subprocess.run(
                    [sys.executable, __file__, "--stage", f"{config}:{method}", "--image",
                     args.image, "--batch_size", str(args.batch_size), "--repeats",
                     str(args.repeats)], capture_output=True, text=True, env=env, cwd=REPO)
                if out.returncode:
                    sys.exit(f"{config}:{method} failed:\n{out.stderr[-3000:]}")
                results[method] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  done: {config}:{method} {results[method]['seconds']:.1f} s",
                  file=sys.stderr, flush=True)
        params = next((r["params"] for r in results.values() if "params" in r), 0)
        print(f"\n[{config}] {CONFIGS[config] or 'reference defaults'}, {params:,} parameters")
        print(f"  {'method':<52} {'tiles':>5} {'s/image':>9} {'CPU s':>8} {'peak RSS GiB':>13}")
        for method, r in results.items():
            tiles = "-" if r["tiles"] is None else str(r["tiles"])
            print(f"  {NAMES[method]:<52} {tiles:>5} {r['seconds']:>9.2f} {r['cpu']:>8.2f} "
                  f"{r['peak_rss_gib']:>13.2f}")
        compare(results)


def compare(results: dict) -> None:
    def ratio(x, y, key):
        return results[x][key] / results[y][key]
    if "a" in results and "c" in results:
        print(f"  a/c (tiling overhead) = {ratio('a', 'c', 'seconds'):.3f} wall, "
              f"{ratio('a', 'c', 'cpu'):.3f} CPU   target <= 1.05")
    if "a" in results and "a_patch" in results:
        print(f"  a_patch/a (extract_patches vs slices on this CPU) = "
              f"{ratio('a_patch', 'a', 'seconds'):.3f} wall, {ratio('a_patch', 'a', 'cpu'):.3f} CPU")
    for fast in ("a_fit", "a"):
        if fast in results and "b" in results:
            print(f"  {fast}/b (per-image time vs the reference loop) = "
                  f"{ratio(fast, 'b', 'seconds'):.3f} wall, {ratio(fast, 'b', 'cpu'):.3f} CPU   "
                  f"target <= 1")
    if "s" in results and "a_fit" in results:
        print(f"  s/a_fit peak RSS (vessel-segment vs the predictor alone) = "
              f"{ratio('s', 'a_fit', 'peak_rss_gib'):.2f}   target <= 1.2")


if __name__ == "__main__":
    main()
