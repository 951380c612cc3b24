"""vessel-download-stare: fetches the official STARE archives into the STARE layout.

    vessel-download-stare --output_dir stare [--with_vk]

    OUT/archives/stare-images.tar      the downloaded archives (kept unless --nokeep_archives)
    OUT/stare-images/imNNNN.ppm.gz     photographs
    OUT/labels-ah/imNNNN.ah.ppm.gz     Adam Hoover's vessel maps
    OUT/labels-vk/imNNNN.vk.ppm.gz     Valentina Kouznetsova's vessel maps (--with_vk)

Resuming: an interrupted download leaves OUT/archives/NAME.tar.part; rerun the same
command to continue it. A complete NAME.tar is not downloaded again (--overwrite forces it).

Downloads are resumable: bytes go to `NAME.part` and a rerun continues it with an HTTP
Range request (a file:// source is read from the same offset). Every archive member is
decoded (gzip, then the PPM) before it is written; a corrupt member is left out of the
layout and makes the command exit with status 1. Labels without a photograph (the
official labels-ah.tar holds im0324.ah.ppm.gz, whose photo is not in stare-images.tar)
are reported as warnings only.

Verification: every archive member is gunzipped and decoded as an image before it is
written. A corrupt member is NOT written (an older copy of it is removed), is named in an
error line, and the command exits with status 1; the good members are still written.
Duplicate file names (the first good member is kept) and link members (never followed)
are warnings. Exit status: 0 when every member of every archive decodes; 1 when an
archive could not be fetched or read, or a member is corrupt; 2 for bad flags or an
output folder that cannot be written (read-only, full disk, a remote URL).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from absl import app, flags

from tiled_vessel_seg import cli_app, storage
from tiled_vessel_seg import stare_download

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("output_dir", "stare", "Folder to create the STARE layout in.")
    flags.DEFINE_string("out_dir", None, "Deprecated spelling of --output_dir (accepted).")
    flags.DEFINE_string("url_base", stare_download.DEFAULT_URL_BASE, "Folder URL holding "
                        "the .tar archives: the official site, a mirror, or "
                        "file:///path/to/folder.")
    flags.DEFINE_bool("with_vk", False, "Also fetch labels-vk.tar (the second observer's "
                      "labels).")
    flags.DEFINE_bool("keep_archives", True, "Keep OUT/archives/*.tar after a clean extraction.")
    flags.DEFINE_bool("overwrite", False, "Download again even if OUT/archives/NAME.tar exists.")
    flags.DEFINE_float("timeout", 60.0, "Seconds without data before a connection is retried.")
    flags.DEFINE_integer("retries", 3, "Resumed retries per archive after a dropped connection.",
                         lower_bound=0)
    flags.DEFINE_bool("progress", True, "Show progress bars.")


def _main(argv: list[str]) -> int:
    """Downloads, prints a summary; returns the exit status."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    output_dir = FLAGS.output_dir
    if FLAGS.out_dir is not None:
        print("note: --out_dir is spelled --output_dir now, as in every other tool; accepted",
              file=sys.stderr)
        if not FLAGS["output_dir"].present:
            output_dir = FLAGS.out_dir
    if storage.is_remote(output_dir):
        raise cli_app.ToolError(f"--output_dir {output_dir}: a local folder is needed (the "
                                "archives are resumed in place); copy it to the bucket after")
    try:
        report = stare_download.download_stare(
            output_dir, FLAGS.url_base, with_vk=FLAGS.with_vk,
            keep_archives=FLAGS.keep_archives, overwrite=FLAGS.overwrite,
            timeout=FLAGS.timeout, retries=FLAGS.retries, progress=FLAGS.progress)
    except stare_download.OutputWriteError as e:
        raise cli_app.ToolError(str(e)) from None
    corrupt = sum(len(a.corrupt) for a in report.archives)
    failed = [a.folder for a in report.archives if a.error]
    print(f"STARE in {Path(output_dir).resolve()}: "
          + ", ".join(f"{a.folder} {len(a.written)} files" for a in report.archives)
          + f"; {corrupt} corrupt, {len(report.unpaired_labels)} unpaired labels"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 0 if report.ok else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the tool in this process (tests, notebooks); argv without the program name."""
    args = ["vessel-download-stare", *(sys.argv[1:] if argv is None else argv)]
    return cli_app.invoke(__name__, __doc__, define_flags, _main, args, with_config=False)


def run() -> None:
    """Console entry point `vessel-download-stare`."""
    cli_app.run(__name__, __doc__, define_flags, _main, with_config=False)


if __name__ == "__main__":
    run()
