"""Range checks live in one place, the config schema (issue 20 item 4): a value out of
range is refused when the config is read, by every tool, before any work."""
import pytest

from tiled_vessel_seg.configs import ConfigError, load_config, schema


@pytest.mark.parametrize("override, message", [
    ("train.steps_per_epoch=0", r"\[train\] steps_per_epoch must be >= 1 or None, got 0"),
    ("train.validation_steps=-2", r"\[train\] validation_steps must be >= 1 or None"),
    ("train.shuffle_buffer=-1", r"\[train\] shuffle_buffer must be >= 0, got -1"),
    ("train.patience=0", r"\[train\] patience must be >= 1, got 0"),
    ("train.augment_blur_sigma=-0.5", r"\[train\] augment_blur_sigma must be >= 0"),
    ("train.augment_jpeg_quality=0", r"\[train\] augment_jpeg_quality must be in \[1, 100\]"),
    ("preprocess.split='train=0.5,valid=0.2'", r"shares sum to 0.7, not 1"),
    ("preprocess.split='training=1.0'", r"expected name=share"),
    ("preprocess.mask_encoding='gif'", r"\[preprocess\] mask_encoding must be packed or png"),
    ("model.loss='focal'", r"\[model\] loss must be bce_dice_loss or balanced_bce_dice_loss, "
                           r"got 'focal'"),
    ("train.monitor='val_iou'", r"\[train\] monitor must be val_loss, val_dice or val_auc"),
])
def test_the_config_refuses_out_of_range_values_at_load(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_the_api_dataclasses_use_the_schema_limits():
    from tiled_vessel_seg.tfrecords import encoding, robust_augment
    assert encoding.IMAGE_ENCODINGS == schema.IMAGE_ENCODINGS
    with pytest.raises(ValueError, match=r"image encoding must be jpeg, png or raw"):
        encoding.TileEncoding(image="gif")
    with pytest.raises(ValueError, match=r"jpeg_quality must be in \[1, 100\], got 101"):
        encoding.TileEncoding(jpeg_quality=101)
    with pytest.raises(ValueError, match=r"channel_gain must be in \[0, 1\), got 1.0"):
        robust_augment.RobustAugmentation(channel_gain=1.0)
    assert schema.parse_split("train=0.6,test=0.4") == {"train": 0.6, "valid": 0.0,
                                                        "test": 0.4}
