"""`import tiled_vessel_seg` switches TensorFlow's oneDNN kernels on unless the user chose."""
import os
import subprocess
import sys

PROBE = ("import os, tiled_vessel_seg; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))")


def _probe(env_value):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if env_value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, check=True, cwd="/")
    return out.stdout.strip()


def test_onednn_is_on_by_default():
    assert _probe(None) == "1"


def test_a_users_choice_is_kept():
    assert _probe("0") == "0"
