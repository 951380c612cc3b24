"""Training: the U-Net, losses and metrics, MirroredStrategy training, evaluation."""
