"""Does a grid with fewer tiles segment as well? F1 per tiling grid on real STARE (figures).

    .venv/bin/python benchmarks/grid_quality_bench.py --model_dir runs/stare_small_cv/fold_0/model
    .venv/bin/python benchmarks/grid_quality_bench.py --model_dir models/stare_small \
        --scale 5 --images 3          # the photos enlarged 5x in the graph (3500x3025)

Segments the real STARE photographs (native size, as the model was trained) with one
trained model under several tile grids: today's `--overlap` grid (model_info.json's
overlap, with its reflected margin) and `--min_overlap M` grids (per image the smallest
grid whose tiles overlap by >= M px), and prints tiles per image, CPU seconds and F1
inside the FOV per image and on average. Images the model was trained on are marked
(model_info.json's data_ids): compare grids on the held-out ones. --scale S enlarges
each photo S times in the graph before tiling (the predictor's input_scale native, at
scale S instead of the model's) and area-averages the probabilities back: the tile grid
of an S-times larger photo (at S = 5 and 512 px tiles the reference's 56 vs 42 tiles),
scored against the native labels; with a model trained at another scale the vessels
are wider than it learned, so compare the grids with each other, not with the native F1.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--stare_dir", default=str(REPO.parent / "shared" / "data" / "stare"))
    parser.add_argument("--min_overlaps", default="0,8,16,32,64")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--scale", type=int, default=None,
                        help="enlarge the photos this many times in the graph "
                             "(default: the model's scale)")
    parser.add_argument("--images", type=int, default=None, help="only the first N photos")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf
    from tiled_vessel_seg import imaging
    from tiled_vessel_seg import datasets
    from tiled_vessel_seg import fov
    from tiled_vessel_seg.inference import metrics, tiling
    from tiled_vessel_seg.inference import predictor as predictor_lib

    from tiled_vessel_seg import model_loading
    model, info = model_loading.load_model(args.model_dir)
    pairs, _ = datasets.discover_stare(args.stare_dir)
    pairs = pairs[:args.images]
    scale = info.scale if args.scale is None else args.scale
    data = [(p.image_id, imaging.read_image(p.image_path),
             imaging.read_mask(p.mask_path).astype(bool)) for p in pairs]
    trained = set(info.data_ids.get("train", [])) | set(info.data_ids.get("valid", []))
    held_out = [i for i, (image_id, _, _) in enumerate(data) if image_id not in trained]
    grids = [("overlap", info.overlap)] + [("min_overlap", int(m))
                                           for m in args.min_overlaps.split(",")]
    print(f"{args.model_dir}: tile {info.tile_size}, model_info overlap {info.overlap}, "
          f"threshold {info.threshold}, photos enlarged x{scale} in the graph; images "
          + " ".join(f"{i}{'' if i in trained else '*'}" for i, _, _ in data)
          + " (* held out)")
    print("| grid | tiles/image | CPU s | FOV F1 mean | held-out mean | per image |")
    print("|---|---|---|---|---|---|")
    for kind, value in grids:
        predictor = predictor_lib.TiledPredictor(
            model, threshold=info.threshold, batch_size=args.batch_size, scale=scale,
            input_scale="native", **{kind: value})
        grid = tiling.fitted_grid if predictor.fitted else tiling.tile_grid
        f1, tiles = [], 0
        start = time.process_time()
        for _, image, truth in data:
            probabilities = predictor(image)[0].numpy()
            f1.append(metrics.segmentation_metrics(probabilities, truth, info.threshold,
                                                   fov.fov_mask(image))["dice"])
            tiles += int(grid(tf.constant(scale * image.shape[0]), predictor.tile_size,
                              value)[0]) * \
                int(grid(tf.constant(scale * image.shape[1]), predictor.tile_size, value)[0])
        cpu = time.process_time() - start
        held = f"{np.mean([f1[i] for i in held_out]):.4f}" if held_out else "-"
        print(f"| --{kind} {value} | {tiles / len(data):.1f} | {cpu:.1f} | {np.mean(f1):.4f} "
              f"| {held} | {' '.join(f'{f:.4f}' for f in f1)} |", flush=True)


if __name__ == "__main__":
    main()
