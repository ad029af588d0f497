"""The paper's reported numbers (real DEAP, frame split; see notebook 01 on that split), for side-by-side tables.

Tables 2, 3 and 4 of the MS-VSSM paper: test accuracy and weighted F1. Table 4 repeats
Table 2's baselines and adds MS-VSSM, which is also Table 3's last row.
"""
from __future__ import annotations

import pandas as pd

# Table 2 (baselines) and Table 4 (with MS-VSSM): model -> (accuracy, weighted F1)
TABLE_4 = {
    "RepViT": (0.9100, 0.9079),
    "DilateFormer": (0.9390, 0.9352),  # "DilatedFormer" in the paper
    "VSSM": (0.9403, 0.9403),
    "MS-VSSM": (0.9731, 0.9756),
}
TABLE_2 = {k: v for k, v in TABLE_4.items() if k != "MS-VSSM"}
# Table 3 (ablation), in the paper's order: each row adds one part to the one above.
TABLE_3 = {
    "VSSM": (0.9403, 0.9403),
    "VSSM+SE": (0.9589, 0.9617),
    "VSSM+SE+LayerScale": (0.9672, 0.9684),
    "VSSM+SE+LayerScale+DSPP": (0.9731, 0.9756),
}
# Fig. 2: the diagonal of the row-normalised confusion matrix (recall per class).
FIG_2_RECALL = {"HVHA": 0.9935, "HVLA": 0.9682, "LVHA": 0.9628, "LVLA": 0.9747}


def table(rows: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """A paper table as a DataFrame indexed by row name, columns ``accuracy`` and ``weighted_f1``."""
    return pd.DataFrame.from_dict(rows, orient="index", columns=["accuracy", "weighted_f1"])
