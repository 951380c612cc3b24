"""Preprocessing Beam job: STARE files -> enlarged, tiled, augmented, split TFRecord shards."""
