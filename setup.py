"""tiled-vessel-seg: retinal vessel segmentation of large fundus images.

Beam preprocessing -> sharded TFRecords -> multi-replica U-Net training ->
one-graph tiled inference. See README.md.
"""
import setuptools

NAMESPACE = "tiled_vessel_seg"
STAGE_FOLDERS = ("configs", "synthetic", "beam_jobs", "tfrecords", "trainer", "inference",
                 "pipeline", "models")

INSTALL_REQUIRES = [
    "tensorflow==2.17.1",
    # >=3.15.1: safe_mode bypasses CVE-2025-1550, -8747, -9905 (.h5 ignores safe_mode), -9906,
    # -49655, CVE-2026-1462 and -12481 (fixed in 3.15.0) are all fixed; docs/security.md.
    "keras>=3.15.1,<3.16",
    "apache-beam[tfrecord]==2.77.0",
    "google-crc32c>=1.5",
    "numpy>=1.26,<2",
    "opencv-python-headless>=4.8",
    "absl-py>=2.0",
    "matplotlib>=3.7",
    "pillow>=9.0",  # GIF decoding and TIFF headers in tiled_vessel_seg.imaging
    "tqdm>=4.60",
]

setuptools.setup(
    name="tiled-vessel-seg",
    version="0.2.0",
    description="Retinal vessel segmentation of large fundus images: Beam, tf.data, "
    "MirroredStrategy U-Net and one-graph tiled inference.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",  # LICENSE
    python_requires=">=3.11,<3.13",  # keras 3.15 needs 3.11,
    # The stage folders stay at the top of the repository and are installed under one
    # namespace, tiled_vessel_seg.<stage>, so no generic top-level name is claimed.
    packages=[NAMESPACE] + [f"{NAMESPACE}.{stage}" for stage in STAGE_FOLDERS],
    package_dir={NAMESPACE: NAMESPACE, **{f"{NAMESPACE}.{s}": s for s in STAGE_FOLDERS}},
    package_data={NAMESPACE: ["py.typed"], f"{NAMESPACE}.configs": ["*.config"],
                  f"{NAMESPACE}.models": ["*/*.keras", "*/*.json", "*/*.md"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest>=7", "pytest-timeout>=2"],
        "dataflow": ["apache-beam[gcp,tfrecord]==2.77.0"],
    },
    entry_points={
        "console_scripts": [
            "vessel-synth=tiled_vessel_seg.synthetic.cli:run",
            "vessel-preprocess=tiled_vessel_seg.beam_jobs.cli:run",
            "vessel-train=tiled_vessel_seg.pipeline.train_cli:run",
            "vessel-evaluate=tiled_vessel_seg.trainer.evaluate_cli:run",
            "vessel-segment=tiled_vessel_seg.inference.cli:run",
            "vessel-segment-beam=tiled_vessel_seg.inference.beam_cli:run",
            "vessel-export=tiled_vessel_seg.inference.export:run",
            "vessel-download-stare=tiled_vessel_seg.stare_download_cli:run",
            "vessel-run=tiled_vessel_seg.pipeline.run:run",
            "vessel-cv=tiled_vessel_seg.pipeline.cv:run",
            "vessel-cv-compare=tiled_vessel_seg.pipeline.compare_cli:run",
        ],
    },
)
