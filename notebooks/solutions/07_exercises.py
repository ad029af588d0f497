"""Solutions to the exercises of notebook 07 (checked by tests/test_exercises.py)."""
import numpy as np
import torch


def overfit_one_batch(model, images, labels, steps):
    """Train on one fixed batch; return the loss of each step (it should fall towards 0)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def recall_from_confusion(counts):
    """Row i holds the images of true class i: recall_i = counts[i, i] / sum of row i."""
    counts = np.asarray(counts, dtype=float)
    return np.diag(counts) / counts.sum(axis=1)
