"""Throughput of the vessel-preprocess Beam job on real STARE images (figures, not a test).

Runs the whole job (read, check, plan tiles, shuffle, rebuild + augment + encode tiles,
write shards, finalize) on the DirectRunner, without augmentation and with the reference
augmentation set, with 1 and 2 workers in multi_processing mode (and 1 worker in_memory
for reference), side by side in one run. Prints seconds per image, tiles and records per
second, the 2-worker / 1-worker throughput ratio, and the speed-up over the reference
generator (120.5 s per image with its augmentation set, 1 core, on this machine).

    .venv/bin/python benchmarks/preprocess_bench.py                 # 7 images plain, 2 augmented
    .venv/bin/python benchmarks/preprocess_bench.py --aug_images 7 --image_encoding png

Wall times include Beam start-up (and, for multi_processing, worker start-up), so they
are what a user waits for; "CPU s/image" (this process plus its reaped workers) is less
sensitive to other load on the machine. `--profile` adds cProfile's top entries for the
per-tile work of one augmented image (where the CPU time goes). Every image goes to the
train split so all are augmented.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pathlib
import pstats
import resource
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tiled_vessel_seg import datasets  # noqa: E402
from tiled_vessel_seg.beam_jobs import pipeline  # noqa: E402
from tiled_vessel_seg.configs.schema import PreprocessConfig, REFERENCE_AUGMENTATIONS  # noqa: E402

REFERENCE_SECONDS_PER_IMAGE = 120.5
TARGET_AUGMENTED_SECONDS = 6.0     # per image, reference augmentation set, 2 workers
TARGET_PLAIN_TILES_PER_S = 100.0   # no augmentation
TARGET_WORKER_SPEEDUP = 1.6        # 2 workers over 1


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (multi_processing workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def job_config(augmentations, shards: int, compression: str = "none",
               image_encoding: str = "jpeg", mask_encoding: str = "packed") -> PreprocessConfig:
    return PreprocessConfig(scale=5, tile_size=512, augmentations=tuple(augmentations),
                            split="train=1.0", shards=shards, compression=compression,
                            image_encoding=image_encoding, mask_encoding=mask_encoding)


def run_once(pairs, augmentations, workers: int, mode: str = "multi_processing",
             compression: str = "none", image_encoding: str = "jpeg",
             mask_encoding: str = "packed", shards: int = 0) -> dict:
    """One whole job in a fresh output folder; its timings and counts."""
    from apache_beam.options.pipeline_options import PipelineOptions
    config = job_config(augmentations, shards, compression, image_encoding, mask_encoding)
    options = PipelineOptions([f"--direct_num_workers={workers}",
                               f"--direct_running_mode={mode}",
                               "--default_sdk_harness_log_level=WARNING"])
    out = tempfile.mkdtemp(prefix="preprocess_bench_")
    try:
        cpu_start = cpu_seconds()
        start = time.perf_counter()
        summary = pipeline.run_job(config, pairs, [], out, options)
        seconds = time.perf_counter() - start
        cpu = cpu_seconds() - cpu_start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    records = summary.tiles_kept + summary.augmented
    return {"augment": "reference" if augmentations else "none", "workers": workers,
            "mode": mode, "encoding": f"{image_encoding}+{mask_encoding}",
            "images": len(pairs), "tiles": summary.tiles_kept, "records": records,
            "seconds": seconds, "cpu_per_image": cpu / len(pairs),
            "s_per_image": seconds / len(pairs), "tiles_per_s": summary.tiles_kept / seconds,
            "records_per_s": records / seconds}


def print_table(rows: list[dict]) -> None:
    header = ("| augment   | encoding     | workers          | images | tiles | records | wall s "
              "| s/image | CPU s/image | tiles/s | records/s | vs reference 120.5 s/image |")
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        speedup = (f"{REFERENCE_SECONDS_PER_IMAGE / r['s_per_image']:.1f}x"
                   if r["augment"] == "reference" else "-")
        workers = f"{r['workers']} {r['mode']}"
        print(f"| {r['augment']:9s} | {r['encoding']:12s} | {workers:16s} | {r['images']:6d} "
              f"| {r['tiles']:5d} | {r['records']:7d} | {r['seconds']:6.1f} "
              f"| {r['s_per_image']:7.2f} | {r['cpu_per_image']:11.2f} | {r['tiles_per_s']:7.1f} "
              f"| {r['records_per_s']:9.1f} | {speedup:26s} |")


def check_targets(rows: list[dict]) -> list[str]:
    """Lines 'target: figure -> met|MISSED' for the rows of the default encoding."""
    def find(augment, workers, mode="multi_processing"):
        return next((r for r in rows if r["augment"] == augment and r["workers"] == workers
                     and r["mode"] == mode and r["encoding"] == "jpeg+packed"), None)
    lines = []
    aug2, aug1 = find("reference", 2), find("reference", 1)
    plain2, plain1 = find("none", 2), find("none", 1)
    if aug2:
        ok = aug2["s_per_image"] <= TARGET_AUGMENTED_SECONDS
        lines.append(f"reference augmentation, 2 workers: {aug2['s_per_image']:.2f} s/image "
                     f"(target <= {TARGET_AUGMENTED_SECONDS:g}) -> {'met' if ok else 'MISSED'}")
    plain_rows = [r for r in rows if r["augment"] == "none" and r["encoding"] == "jpeg+packed"]
    best_plain = max(plain_rows, key=lambda r: r["tiles_per_s"], default=None)
    if best_plain:
        ok = best_plain["tiles_per_s"] >= TARGET_PLAIN_TILES_PER_S
        lines.append(f"no augmentation: {best_plain['tiles_per_s']:.1f} tiles/s with "
                     f"{best_plain['workers']} {best_plain['mode']} worker(s) (target >= "
                     f"{TARGET_PLAIN_TILES_PER_S:g}, "
                     f"whole job incl. start-up) -> {'met' if ok else 'MISSED'}")
    for name, one, two in (("reference augmentation", aug1, aug2), ("no augmentation", plain1, plain2)):
        if one and two:
            ratio = two["records_per_s"] / one["records_per_s"]
            ok = ratio >= TARGET_WORKER_SPEEDUP
            lines.append(f"{name}: 2 workers / 1 worker throughput {ratio:.2f} (target >= "
                         f"{TARGET_WORKER_SPEEDUP:g}) -> {'met' if ok else 'MISSED'}")
    return lines


def profile_tile_work(pair, top: int = 12) -> str:
    """cProfile's top entries (by own time) of one augmented image's per-tile work
    (tile_tasks.task_records of every task), as the tile stage runs it."""
    import cv2
    from tiled_vessel_seg.beam_jobs import tile_tasks
    cv2.setNumThreads(1)
    config = job_config(REFERENCE_AUGMENTATIONS, 1)
    item = pipeline.WorkItem(pair.image_id, pair.image_path, pair.mask_path, "train")
    image, mask, _ = pipeline.load_pair(item)
    plan = tile_tasks.plan_image(item.image_id, item.image_path, "train", image, mask, config)
    encoding = pipeline.tile_encoding(config)
    profiler = cProfile.Profile()
    start = time.process_time()
    profiler.enable()
    for task in plan.tasks:
        for _ in tile_tasks.task_records(task, config, encoding):
            pass
    profiler.disable()
    cpu = time.process_time() - start
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    body = "\n".join(line for line in text.getvalue().splitlines()
                     if line.strip() and not line.startswith(("   Ordered", "   List")))
    return (f"per-tile work of {pair.image_id} ({len(plan.tasks)} tiles x "
            f"{1 + len(tile_tasks.augment_variants('train', config))} records), one process, "
            f"{cpu:.2f} CPU s ({cpu / len(plan.tasks) * 1e3:.0f} ms per tile); cProfile:\n{body}")


def main() -> None:
    default_dir = REPO.parent / "shared" / "data" / "stare"
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stare_dir", default=str(default_dir))
    p.add_argument("--images", type=int, default=7, help="images for the runs without augmentation")
    p.add_argument("--aug_images", type=int, default=2, help="images for the augmented runs")
    p.add_argument("--workers", default="1,2",
                   help="comma list of DirectRunner worker counts (multi_processing)")
    p.add_argument("--in_memory", action=argparse.BooleanOptionalAction, default=True,
                   help="also run 1 worker in_memory (no process boundary)")
    p.add_argument("--compression", default="none", choices=("gzip", "none"))
    p.add_argument("--image_encoding", default="jpeg", choices=("jpeg", "png", "raw"))
    p.add_argument("--mask_encoding", default="packed", choices=("packed", "png"))
    p.add_argument("--shards", type=int, default=0, help="shards per split (0: one per "
                                                         "writing worker, no shuffle)")
    p.add_argument("--profile", action="store_true",
                   help="print cProfile's top entries of one augmented image's tile work")
    args = p.parse_args()
    if not os.path.isdir(os.path.join(args.stare_dir, "stare-images")):
        sys.exit(f"preprocess_bench: no STARE folder at {args.stare_dir}")
    import tensorflow  # noqa: F401  (imported once here, not inside the timings)
    pairs, _ = datasets.discover_stare(args.stare_dir)
    runs = [(w, "multi_processing") for w in (int(x) for x in args.workers.split(","))]
    if args.in_memory:
        runs.insert(0, (1, "in_memory"))
    rows = []
    for augmentations, n in (((), args.images), (REFERENCE_AUGMENTATIONS, args.aug_images)):
        for workers, mode in runs:
            rows.append(run_once(pairs[:n], augmentations, workers, mode, args.compression,
                                 args.image_encoding, args.mask_encoding, args.shards))
            print(f"  done: augment={rows[-1]['augment']} workers={workers} {mode} "
                  f"{rows[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    print(f"\nvessel-preprocess benchmark: scale 5, tile 512, {args.shards or 'auto'} "
          f"{args.compression} shards per split, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    print_table(rows)
    for line in check_targets(rows):
        print(line)
    if args.profile:
        print(profile_tile_work(pairs[0]))


if __name__ == "__main__":
    main()
