"""Write assets/sample_face.jpg, the repository's sample photo for `msvssm predict` (notebook 11).

    python tools/make_sample_photo.py [--out assets/sample_face.jpg]

The picture is drawn by the synthetic DEAP's face renderer (msvssm.data.face_render) for a
person of generator seed 2024, a seed the course never generates data with: no model has
seen this face. Deterministic: running it again writes the same image.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from msvssm.inside import make_sample_photo

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "sample_face.jpg")
    args = parser.parse_args()
    path = make_sample_photo(args.out)
    print(f"{path} ({path.stat().st_size / 1024:.1f} KB)")


if __name__ == "__main__":
    main()
