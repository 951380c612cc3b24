"""tiled-vessel-seg: retinal vessel segmentation of large fundus images.

Beam preprocessing -> sharded TFRecords -> multi-replica U-Net training ->
one-graph tiled inference. See README.md.
"""
import setuptools

INSTALL_REQUIRES = [
    "tensorflow==2.17.1",
    "keras>=3.5,<3.16",
    "tensorflow-io==0.37.1",
    "apache-beam[tfrecord]==2.77.0",
    "google-crc32c>=1.5",
    "numpy>=1.26,<2",
    "opencv-python-headless>=4.8",
    "absl-py>=2.0",
    "matplotlib>=3.7",
    "pillow>=9.0",  # GIF decoding in beam_jobs.image_io (OpenCV has no GIF reader)
    "tqdm>=4.60",
]

setuptools.setup(
    name="tiled-vessel-seg",
    version="0.1.0",
    description="Retinal vessel segmentation of large fundus images: Beam, tf.data, "
    "MirroredStrategy U-Net and one-graph tiled inference.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=setuptools.find_packages(include=[
        "configs", "synthetic", "beam_jobs", "tfrecords", "trainer", "inference",
        "pipeline",
    ]),
    package_data={"configs": ["*.config"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest>=7", "pytest-timeout>=2"],
        "dataflow": ["apache-beam[gcp,tfrecord]==2.77.0"],
    },
    entry_points={
        "console_scripts": [
            "vessel-synth=synthetic.cli:run",
            "vessel-preprocess=beam_jobs.cli:run",
            "vessel-train=trainer.train:run",
            "vessel-evaluate=trainer.evaluate:run",
            "vessel-segment=inference.cli:run",
            "vessel-export=inference.export:run",
            "vessel-download-stare=pipeline.download_stare:run",
            "vessel-run=pipeline.run:run",
        ],
    },
)
