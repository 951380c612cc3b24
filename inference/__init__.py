"""Whole-image segmentation: one-graph tiled prediction, CLI, SavedModel export."""
