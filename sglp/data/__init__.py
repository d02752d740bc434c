"""Datasets: each loader returns splits that serve train / calibration / test batches."""
