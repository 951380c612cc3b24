"""Record encodings side by side in one run, on real 512 x 512 STARE tiles (figures, not a test).

For png / jpeg / raw images (with png or packed masks), on the kept tiles of real STARE
photographs enlarged 5x:
  [1] bytes per record (and gzipped, as --compression gzip stores them), encode ms (OpenCV
      + protobuf, one core), decode ms (the reader's graph decoder, one core), the lowest
      JPEG PSNR against the lossless tile, masks bit-exact;
  [2] input-pipeline tiles per CPU-second of `reader.make_dataset` in training mode
      (shard shuffle, record shuffle, decode, online augmentation, batch of 8 at 512x512),
      and without online augmentation; where a target is missed, the per-step cost
      (records only / decode / + float / + augmentation) as measured;
  [3] vessel-preprocess seconds per image with the reference augmentation set on 1 and 2
      DirectRunner workers (multi_processing), next to the reference generator's 120.5 s,
      and tiles/s without augmentation (benchmarks/preprocess_bench.py's runs), with a
      cProfile of the tile work when a target is missed.

    .venv/bin/python benchmarks/records_bench.py                  # all of it, ~5 minutes
    .venv/bin/python benchmarks/records_bench.py --skip_preprocess

Targets (default encoding, jpeg 95 + packed masks): [2] >= 300 tiles per CPU-second with
augmentation, and >= 3x the PNG figure of the same run; [3] <= 6 s per image with the
reference augmentation set on 2 workers, >= 100 tiles/s without augmentation, 2 workers
>= 1.6x the throughput of 1. Tiles per CPU-second holds when other jobs share the cores;
wall-clock figures ([3]) do not, so the load average is printed with them.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import shutil
import sys
import tempfile
import time
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

from tiled_vessel_seg.tfrecords.encoding import TileEncoding  # noqa: E402

ENCODINGS = {
    "png": TileEncoding("png", "png"),        # schema version 1's only form
    "jpeg": TileEncoding("jpeg", "packed"),   # the default
    "raw": TileEncoding("raw", "packed"),
    "jpeg+png mask": TileEncoding("jpeg", "png"),
}
DEFAULT = "jpeg"
TARGET_TILES_PER_CPU_S = 300.0
TARGET_VS_PNG = 3.0


def real_tiles(stare_dir: str, image_ids: list[str]):
    """[(TileRecord, image uint8 [512, 512, 3], mask uint8 [512, 512])]: the kept tiles of
    the images at scale 5 (the Beam job's own tile planning)."""
    from tiled_vessel_seg import datasets
    from tiled_vessel_seg.beam_jobs import pipeline, tile_tasks
    from tiled_vessel_seg.configs.schema import PreprocessConfig
    from tiled_vessel_seg.tfrecords import schema
    config = PreprocessConfig(scale=5, tile_size=512, augmentations=())
    pairs = {p.image_id: p for p in datasets.discover_stare(stare_dir)[0]}
    out = []
    for image_id in image_ids:
        pair = pairs[image_id]
        item = pipeline.WorkItem(image_id, pair.image_path, pair.mask_path, "train")
        image, mask, _ = pipeline.load_pair(item)
        for task in tile_tasks.plan_image(image_id, pair.image_path, "train", image, mask,
                                          config).tasks:
            tile, tile_mask = tile_tasks.build_tile(task, config)
            tile = np.ascontiguousarray(tile)
            out.append((schema.TileRecord(tile, tile_mask, image_id, task.y, task.x, 5,
                                          schema.NO_AUGMENTATION, pair.image_path),
                        tile, tile_mask))
    return out


def write_dataset(data_dir: str, records: list[bytes], encoding: TileEncoding,
                  shards: int = 2) -> None:
    """A one-split ("train") dataset of the serialized records, with its dataset_info.json."""
    import tensorflow as tf
    from tiled_vessel_seg import storage
    from tiled_vessel_seg.tfrecords import dataset_info as info_lib
    from tiled_vessel_seg.tfrecords import schema
    os.makedirs(os.path.join(data_dir, "train"), exist_ok=True)
    names = [storage.shard_name("train", k, shards) for k in range(shards)]
    writers = [tf.io.TFRecordWriter(os.path.join(data_dir, n)) for n in names]
    for k, record in enumerate(records):
        writers[k % shards].write(record)
    for writer in writers:
        writer.close()
    info_lib.write_dataset_info(data_dir, info_lib.DatasetInfo(
        schema_version=schema.SCHEMA_VERSION, compression="none",
        encoding=dataclasses.asdict(encoding), parameters={"tile_size": 512, "scale": 5},
        splits={"train": info_lib.SplitInfo(image_ids=["real"], tiles=len(records),
                                            augmented_tiles=0, records=len(records),
                                            shards=names)}))


def codec_figures(tiles, encoding: TileEncoding) -> dict:
    """Bytes, encode ms and decode ms per record, and the JPEG PSNR, on one core."""
    import tensorflow as tf
    from tiled_vessel_seg.tfrecords import schema
    start = time.process_time()
    records = [schema.encode_example(record, encoding) for record, _, _ in tiles]
    encode_ms = (time.process_time() - start) / len(tiles) * 1e3
    decode = schema.tile_decoder(schema.RecordFormat(schema.SCHEMA_VERSION, encoding))
    data = tf.data.Dataset.from_tensor_slices(records).map(decode)  # sequential: one core
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    data = data.with_options(options)
    for _ in data.take(2):
        pass
    start = time.process_time()
    decoded = [(image.numpy(), mask.numpy()) for image, mask in data]
    decode_ms = (time.process_time() - start) / len(tiles) * 1e3
    errors = np.array([np.mean((image.astype(np.float64) - tile) ** 2)
                       for (image, _), (_, tile, _) in zip(decoded, tiles)])
    masks_exact = all(np.array_equal(mask[..., 0], tile_mask)
                      for (_, mask), (_, _, tile_mask) in zip(decoded, tiles))
    gzipped = float(np.mean([len(zlib.compress(r, 6)) for r in records]))  # --compression gzip
    psnr = float("inf") if errors.max() == 0 else 10 * np.log10(255.0 ** 2 / errors.max())
    return {"bytes": float(np.mean([len(r) for r in records])), "gzip_bytes": gzipped,
            "encode_ms": encode_ms,
            "decode_ms": decode_ms, "min_psnr": psnr, "masks_exact": masks_exact,
            "records": records}


def pipeline_rate(data_dir: str, augment: bool, seconds: float, batch: int = 8) -> float:
    """Tiles per CPU-second (this process, all threads) of make_dataset in training mode."""
    from tiled_vessel_seg.tfrecords import reader
    data = reader.make_dataset(data_dir, reader.InputConfig(
        "train", batch, training=True, augment=augment, seed=0, shuffle_buffer=64))
    iterator = iter(data)
    for _ in range(5):  # warm-up: tracing, buffers
        next(iterator)
    tiles, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        next(iterator)
        tiles += batch
    return tiles / (time.process_time() - cpu_start)


def step_costs(data_dir: str, seconds: float, batch: int = 8) -> list[tuple[str, float]]:
    """CPU ms per tile of the training pipeline cut after each step (the same shuffled,
    cached records; batch of 8), i.e. where the pipeline's time goes."""
    import tensorflow as tf
    from tiled_vessel_seg.tfrecords import dataset_info as info_lib
    from tiled_vessel_seg.tfrecords import reader, schema
    info = info_lib.read_dataset_info(data_dir)
    parse = schema.tile_decoder(info.record_format)
    spec = schema.feature_spec(info.record_format, metadata=False)
    steps = [("parse the Example only", lambda s, k: tf.io.parse_single_example(s, spec)),
             ("+ decode image and mask (uint8)", lambda s, k: parse(s)),
             ("+ to float32", lambda s, k: reader.to_float(*parse(s))),
             ("decode + online augmentation", lambda s, k: reader.augment_tile(*parse(s), k))]
    out = []
    for name, fn in steps:
        records = tf.data.TFRecordDataset(info.shard_paths(data_dir, "train")).cache().repeat()
        seeds = tf.data.Dataset.random(seed=0).batch(2)
        data = (tf.data.Dataset.zip((records.shuffle(64, seed=0), seeds))
                .map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
                .batch(batch).prefetch(2))
        iterator = iter(data)
        for _ in range(5):
            next(iterator)
        tiles, start, cpu_start = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            next(iterator)
            tiles += batch
        out.append((name, (time.process_time() - cpu_start) / tiles * 1e3))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stare_dir", default=str(REPO.parent / "shared" / "data" / "stare"))
    parser.add_argument("--tile_images", default="im0001,im0044",
                        help="images whose kept 512 tiles are encoded and streamed")
    parser.add_argument("--seconds", type=float, default=8.0, help="per input-pipeline figure")
    parser.add_argument("--skip_preprocess", action="store_true", help="only [1] and [2]")
    parser.add_argument("--images", type=int, default=7, help="[3] images without augmentation")
    parser.add_argument("--aug_images", type=int, default=2, help="[3] images with augmentation")
    parser.add_argument("--shards", type=int, default=0, help="[3] shards per split (0: auto)")
    args = parser.parse_args()
    if not os.path.isdir(os.path.join(args.stare_dir, "stare-images")):
        sys.exit(f"records_bench: no STARE folder at {args.stare_dir}")
    import tensorflow  # noqa: F401  (once, outside the timings)

    tiles = real_tiles(args.stare_dir, args.tile_images.split(","))
    print(f"{len(tiles)} real 512x512 tiles (kept tiles of {args.tile_images} at scale 5); "
          f"{os.cpu_count()} cores shared with other jobs, load average "
          f"{os.getloadavg()[0]:.1f} at the start")
    work = tempfile.mkdtemp(prefix="records_bench_")
    try:
        codecs, rates = {}, {}
        for name, encoding in ENCODINGS.items():
            codecs[name] = codec_figures(tiles, encoding)
            write_dataset(os.path.join(work, name), codecs[name]["records"], encoding)
        print("\n[1] records (one core)")
        print("| image + mask       | bytes/record | gzipped    | encode ms | decode ms | min PSNR dB | masks exact |")
        print("|--------------------|--------------|------------|-----------|-----------|-------------|-------------|")
        for name, c in codecs.items():
            enc = ENCODINGS[name]
            label = f"{enc.image}{' q' + str(enc.jpeg_quality) if enc.image == 'jpeg' else ''} + {enc.mask}"
            print(f"| {label:18s} | {c['bytes'] / 1024:9.1f} KB | {c['gzip_bytes'] / 1024:7.1f} KB "
                  f"| {c['encode_ms']:9.2f} "
                  f"| {c['decode_ms']:9.2f} | {c['min_psnr']:11.1f} | {str(c['masks_exact']):11s} |")

        print(f"\n[2] input pipeline, training mode, 512x512, batch 8 ({args.seconds:g} s each)")
        print("| image + mask       | augmented tiles/CPU-s | not augmented tiles/CPU-s |")
        print("|--------------------|-----------------------|---------------------------|")
        for name, enc in ENCODINGS.items():
            data_dir = os.path.join(work, name)
            rates[name] = (pipeline_rate(data_dir, True, args.seconds),
                           pipeline_rate(data_dir, False, args.seconds))
            print(f"| {enc.image + ' + ' + enc.mask:18s} | {rates[name][0]:21.0f} "
                  f"| {rates[name][1]:25.0f} |", flush=True)
        rate, png = rates[DEFAULT][0], rates["png"][0]
        met = rate >= TARGET_TILES_PER_CPU_S and rate >= TARGET_VS_PNG * png
        print(f"default ({DEFAULT}): {rate:.0f} augmented tiles per CPU-second (target >= "
              f"{TARGET_TILES_PER_CPU_S:g}), {rate / png:.2f}x PNG's {png:.0f} (target >= "
              f"{TARGET_VS_PNG:g}x) -> {'met' if met else 'MISSED'}")
        if not met:
            print("where the time goes, CPU ms per tile (training pipeline cut after each step):")
            for name in (DEFAULT, "png"):
                for step, ms in step_costs(os.path.join(work, name), args.seconds / 2):
                    print(f"  {name:5s} {step:34s} {ms:6.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if args.skip_preprocess:
        return
    import preprocess_bench
    from tiled_vessel_seg import datasets
    from tiled_vessel_seg.configs.schema import REFERENCE_AUGMENTATIONS
    pairs, _ = datasets.discover_stare(args.stare_dir)
    rows = []
    runs = [((), args.images, DEFAULT)] + [(REFERENCE_AUGMENTATIONS, args.aug_images, name)
                                           for name in ("png", "jpeg", "raw")]
    for augmentations, count, name in runs:
        for workers, mode in ((1, "in_memory"), (1, "multi_processing"), (2, "multi_processing")):
            enc = ENCODINGS[name]
            rows.append(preprocess_bench.run_once(pairs[:count], augmentations, workers, mode,
                                                  "none", enc.image, enc.mask,
                                                  shards=args.shards))
            print(f"  done: augment={rows[-1]['augment']} {name} workers={workers} {mode} "
                  f"{rows[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    print(f"\n[3] vessel-preprocess, scale 5, tile 512, {args.shards or 'auto'} shards, "
          f"DirectRunner multi_processing; load average {os.getloadavg()[0]:.1f} at the end")
    preprocess_bench.print_table(rows)
    targets = preprocess_bench.check_targets(rows)
    for line in targets:
        print(line)
    if any("MISSED" in line for line in targets):
        print(preprocess_bench.profile_tile_work(pairs[0]))


if __name__ == "__main__":
    main()
