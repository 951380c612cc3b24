"""reader.InputConfig: the one typed argument of reader.make_dataset (issue 20 item 4)."""
import pytest

pytest.importorskip("tensorflow")

from tiled_vessel_seg.configs import load_config  # noqa: E402
from tiled_vessel_seg.tfrecords import reader, robust_augment  # noqa: E402


def test_for_training_reads_every_input_key_of_the_train_section():
    train = load_config(None, [
        "train.shuffle_buffer=8", "train.online_augmentation=True", "train.seed=3",
        "train.deterministic=True", "train.loss_mask='fov'", "train.augment_blur_sigma=1.5",
        "train.dataset_weights={'stare': 1.0, 'chase_db1': 3.0}"]).train
    params = reader.InputConfig.for_training(train, 8, (32, 32))
    assert (params.split, params.global_batch_size, params.training) == ("train", 8, True)
    assert (params.shuffle_buffer, params.augment, params.seed) == (8, True, 3)
    assert params.deterministic is True and params.with_fov is True
    assert params.tile_shape == (32, 32)
    assert params.dataset_weights == {"stare": 1.0, "chase_db1": 3.0}
    assert params.robust == robust_augment.RobustAugmentation(blur_sigma=1.5)
    # the defaults: nondeterministic order, no weights, whole-tile loss
    plain = reader.InputConfig.for_training(load_config(None).train, 2)
    assert plain.deterministic is None and plain.dataset_weights is None
    assert plain.with_fov is False and plain.robust.is_identity


def test_a_one_pass_config_and_the_batch_check():
    params = reader.InputConfig("test", 4)
    assert params.training is False and params.take_batches is None
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        reader.InputConfig("test", 0)
