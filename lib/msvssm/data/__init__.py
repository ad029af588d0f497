"""Data: DEAP's on-disk layout, the synthetic DEAP generator, preprocessing, splits, datasets."""
