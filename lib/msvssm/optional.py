"""Optional dependencies: imported where they are used, with an error that names the extra to install.

``pip install msvssm`` installs the core: the models, training, evaluation and the
command line (torch, torchvision, timm, numpy, numba, pandas, scikit-learn,
matplotlib, seaborn, tqdm, tabulate; nothing is compiled). The rest comes in extras
(``pyproject.toml``):

* ``faces``: dlib-bin, opencv-python-headless. ``msvssm synth-deap``, ``preprocess`` and
  ``predict``; :mod:`msvssm.data.faces`, :mod:`msvssm.data.video`, :mod:`msvssm.data.face_render`.
* ``analysis``: scikit-image, captum, fvcore, opencv-python-headless, scipy. :mod:`msvssm.classical`,
  :mod:`msvssm.inside`, :mod:`msvssm.flops`, :mod:`msvssm.costs`, :mod:`msvssm.exercises`.
* ``notebooks``: papermill, jupyterlab, ... plus ``faces`` and ``analysis``: the notebooks and
  ``python -m msvssm.reproduce``.
* ``gpu``: mamba-ssm: the ``cuda`` selective-scan backend.

Use :func:`require` instead of a plain ``import`` for these::

    cv2 = require("cv2", "faces", "face detection")
    hog = require("skimage.feature", "analysis", "HOG features").hog
"""
from __future__ import annotations

import importlib
from types import ModuleType

# top-level import name -> (distribution to install, extra that installs it)
OPTIONAL: dict[str, tuple[str, str]] = {
    "cv2": ("opencv-python-headless", "faces"),
    "dlib": ("dlib-bin", "faces"),
    "skimage": ("scikit-image", "analysis"),
    "captum": ("captum", "analysis"),
    "fvcore": ("fvcore", "analysis"),
    "scipy": ("scipy", "analysis"),
    "papermill": ("papermill", "notebooks"),
    "mamba_ssm": ("mamba-ssm", "gpu"),
}


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency is not installed; the message says which extra installs it.

    A :class:`ModuleNotFoundError` (``name`` is the missing module), so code that already
    handles a missing module keeps working.
    """

    def __init__(self, module: str, extra: str, feature: str | None = None, distribution: str | None = None) -> None:
        top = module.split(".")[0]
        distribution = distribution or OPTIONAL.get(top, (top, extra))[0]
        what = f"{feature} needs" if feature else "this needs"
        super().__init__(
            f"{what} {distribution} (module {top!r}), which is not installed: "
            f'pip install "msvssm[{extra}]" (in a checkout of the repository: make venv)',
            name=top,
        )
        self.extra = extra
        self.distribution = distribution


def require(module: str, extra: str | None = None, feature: str | None = None) -> ModuleType:
    """``importlib.import_module(module)``, or a :class:`MissingExtraError` naming the extra to install.

    ``extra`` defaults to the one listed for the module in :data:`OPTIONAL`; ``feature``
    (e.g. ``"msvssm predict"``) says what needs it. Only a missing *module* becomes the
    friendly error: a module that is installed but fails to import (a broken build, a
    missing system library) raises its own error unchanged.
    """
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] != top or isinstance(err, MissingExtraError):
            raise  # something else is missing (inside the package): not ours to explain
        if extra is None:
            if top not in OPTIONAL:
                raise
            extra = OPTIONAL[top][1]
        raise MissingExtraError(module, extra, feature) from err
