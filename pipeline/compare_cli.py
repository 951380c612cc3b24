r"""`vessel-cv-compare`: is a change better? Two vessel-cv runs on the same folds, compared
per held-out image.

    vessel-cv-compare runs/chase_small_cv runs/chase_small_long_cv
    vessel-cv-compare BASELINE CANDIDATE --metric fov_auc --per_image --output pairs.csv

BASELINE and CANDIDATE are vessel-cv --workdir folders (local or gs://). For each dataset
and over all images it prints both runs' mean +- std, the paired difference (candidate -
baseline per image) as mean +- std, and on how many images the candidate scores higher,
then the mean difference per fold. Folds differ by about +-0.02, so a difference of the
two runs' means says little; a paired difference with most images on one side says more.

Only finished folds count, so a run still training compares on the images its finished
folds held out (the others are listed as unpaired). Both runs must hold each image out in
the same fold (same photos, --folds and --seed); otherwise the tool stops and names the
images, unless --allow_different_folds.

Exit status: 0 compared; 2 a folder without finished folds, no image in common, folds
that differ, or a bad flag.
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from absl import app, flags

from tiled_vessel_seg import cli_app, storage
from tiled_vessel_seg.inference.metrics import METRIC_NAMES
from tiled_vessel_seg.pipeline import compare

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_enum("metric", "fov_dice",
                      [*[f"fov_{m}" for m in METRIC_NAMES], *METRIC_NAMES],
                      "The per-image metric compared: fov_* inside the field of view, "
                      "else over the whole image (dice is F1).")
    flags.DEFINE_bool("per_image", False, "Also print one line per paired image.")
    flags.DEFINE_string("output", None, "Also write the pairs as CSV here (dataset, image, "
                        "fold, baseline, candidate, difference).")
    flags.DEFINE_bool("allow_different_folds", False, "Compare even when the runs held some "
                      "image out in different folds (different photos, --folds or --seed).")


def _pm(pair: tuple[float, float], signed: bool = False) -> str:
    return f"{pair[0]:{'+' if signed else ''}.3f} +- {pair[1]:.3f}"


def report_lines(pairing: compare.Pairing, metric: str, per_image: bool) -> list[str]:
    """The table, per-fold line and notes printed for `pairing`."""
    lines = [f"{metric}, paired per held-out image (candidate - baseline):",
             "| dataset | images | baseline | candidate | paired difference | higher | lower |",
             "|---|---|---|---|---|---|---|"]
    for s in compare.paired_summaries(pairing):
        lines.append(f"| {s.name or '(one dataset)'} | {s.images} | {_pm(s.baseline)} | "
                     f"{_pm(s.candidate)} | {_pm(s.difference, True)} | {s.higher} | "
                     f"{s.lower} |")
    folds = compare.fold_differences(pairing)
    lines.append("per fold: " + ", ".join(f"{f} {d:+.3f} ({n})" for f, (d, n) in folds.items()))
    for label, ids in (("baseline", pairing.only_baseline),
                       ("candidate", pairing.only_candidate)):
        if ids:
            lines.append(f"unpaired: {len(ids)} image(s) only in the {label} (other "
                         f"photos, or a fold not finished in the other run): {' '.join(ids)}")
    if per_image:
        for image, (b, c) in pairing.pairs.items():
            lines.append(f"{c.dataset or b.dataset or '-'} {image} fold {c.fold}: "
                         f"{b.value:.3f} -> {c.value:.3f} ({c.value - b.value:+.3f})")
    return lines


def _main(argv: list[str]) -> int:
    if len(argv) != 3:
        raise app.UsageError("give two vessel-cv work dirs: BASELINE CANDIDATE")
    baseline_dir, candidate_dir = argv[1], argv[2]
    try:
        pairing = compare.pair_runs(
            compare.read_heldout_scores(baseline_dir, FLAGS.metric),
            compare.read_heldout_scores(candidate_dir, FLAGS.metric))
    except compare.CompareError as e:
        raise cli_app.ToolError(str(e)) from None
    if not pairing.pairs:
        raise cli_app.ToolError(f"{baseline_dir} and {candidate_dir} have no held-out image "
                                "in common")
    moved = pairing.fold_mismatches
    if moved and not FLAGS.allow_different_folds:
        raise cli_app.ToolError(f"{len(moved)} image(s) held out in different folds by the "
                                f"two runs ({' '.join(moved[:5])}{' ...' if len(moved) > 5 else ''}): "
                                "not the same folds (photos, --folds or --seed differ); "
                                "--allow_different_folds compares anyway")
    print(f"vessel-cv-compare: baseline {baseline_dir}, candidate {candidate_dir}")
    print("\n".join(report_lines(pairing, FLAGS.metric, FLAGS.per_image)))
    if FLAGS.output:
        storage.write_text_atomic(FLAGS.output, compare.pairs_csv(pairing))
        print(f"pairs: {FLAGS.output}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs vessel-cv-compare in this process (tests, notebooks); argv without the
    program name."""
    args = ["vessel-cv-compare", *(sys.argv[1:] if argv is None else argv)]
    return cli_app.invoke(__name__, __doc__, define_flags, _main, args, with_config=False)


def run() -> None:
    """Console entry point `vessel-cv-compare`."""
    cli_app.run(__name__, __doc__, define_flags, _main, with_config=False)


if __name__ == "__main__":
    run()
