"""Throughput of the vessel-preprocess Beam job on real STARE images (figures, not a test).

Runs the whole job (read, enlarge, tile, filter, augment, PNG-encode, write gzip shards,
finalize) on the DirectRunner, without augmentation and with the reference set, with 1
worker (in_memory) and N workers (multi_processing), side by side in one run, and prints
seconds per image, records per second and the speed-up over the reference generator
(120 s per image with its augmentation set, 1 core, on this machine).

    .venv/bin/python benchmarks/preprocess_bench.py                 # 7 images plain, 2 augmented
    .venv/bin/python benchmarks/preprocess_bench.py --aug_images 7 --workers 1,2

Wall times include Beam start-up (and, for multi_processing, worker start-up), so they
are what a user waits for; "CPU s/image" (this process plus its workers) is less
sensitive to other load on the machine. Every image goes to the train split so all are augmented.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import resource
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tiled_vessel_seg.beam_jobs import inputs, pipeline  # noqa: E402
from tiled_vessel_seg.configs.schema import PreprocessConfig, REFERENCE_AUGMENTATIONS  # noqa: E402

REFERENCE_SECONDS_PER_IMAGE = 120.0


def _cpu_seconds() -> float:
    """CPU time of this process and its reaped children (multi_processing workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_once(pairs, augmentations, workers: int, compression: str) -> dict:
    from apache_beam.options.pipeline_options import PipelineOptions
    config = PreprocessConfig(scale=5, tile_size=512, augmentations=augmentations,
                              split="train=1.0", shards=workers, compression=compression)
    mode = "in_memory" if workers == 1 else "multi_processing"
    options = PipelineOptions([f"--direct_num_workers={workers}",
                               f"--direct_running_mode={mode}"])
    out = tempfile.mkdtemp(prefix="preprocess_bench_")
    try:
        cpu_start = _cpu_seconds()
        start = time.perf_counter()
        summary = pipeline.run_job(config, pairs, [], out, options)
        seconds = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu_start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    records = summary.tiles_kept + summary.augmented
    return {"augment": "reference" if augmentations else "none", "workers": workers,
            "images": len(pairs), "tiles": summary.tiles_kept, "records": records,
            "seconds": seconds, "cpu_per_image": cpu / len(pairs), "s_per_image": seconds / len(pairs),
            "tiles_per_s": summary.tiles_kept / seconds, "records_per_s": records / seconds}


def main() -> None:
    default_dir = REPO.parent / "shared" / "data" / "stare"
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stare_dir", default=str(default_dir))
    p.add_argument("--images", type=int, default=7, help="images for the runs without augmentation")
    p.add_argument("--aug_images", type=int, default=2, help="images for the augmented runs")
    p.add_argument("--workers", default="1,2", help="comma list of DirectRunner worker counts")
    p.add_argument("--compression", default="gzip", choices=("gzip", "none"))
    args = p.parse_args()
    if not os.path.isdir(os.path.join(args.stare_dir, "stare-images")):
        sys.exit(f"preprocess_bench: no STARE folder at {args.stare_dir}")
    import tensorflow  # noqa: F401  (imported once here, not inside the timings)
    pairs, _ = inputs.discover_stare(args.stare_dir)
    rows = []
    for augmentations, n in (((), args.images), (REFERENCE_AUGMENTATIONS, args.aug_images)):
        for workers in (int(w) for w in args.workers.split(",")):
            rows.append(run_once(pairs[:n], augmentations, workers, args.compression))
            print(f"  done: augment={rows[-1]['augment']} workers={workers} "
                  f"{rows[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    print(f"\nvessel-preprocess benchmark: scale 5, tile 512, {args.compression} shards, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    header = ("| augment   | workers | images | tiles | records | wall s | s/image | CPU s/image "
              "| tiles/s | records/s | vs reference 120 s/image |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        speedup = (f"{REFERENCE_SECONDS_PER_IMAGE / r['s_per_image']:.1f}x"
                   if r["augment"] == "reference" else "-")
        print(f"| {r['augment']:9s} | {r['workers']:7d} | {r['images']:6d} | {r['tiles']:5d} "
              f"| {r['records']:7d} | {r['seconds']:6.1f} | {r['s_per_image']:7.2f} "
              f"| {r['cpu_per_image']:11.2f} "
              f"| {r['tiles_per_s']:7.1f} | {r['records_per_s']:9.1f} | {speedup:24s} |")


if __name__ == "__main__":
    main()
