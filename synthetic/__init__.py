"""Synthetic STARE-format fundus images with exact vessel masks (the embedded default data)."""
