"""Checks for the exercises of the notebooks, one module per notebook (``nb00`` ... ``nb11``).

    >>> from msvssm.exercises import check, check_zoh_B_bar
    >>> check(check_zoh_B_bar, my_zoh_B_bar)        # prints "correct" or what is wrong

``REGISTRY`` holds every exercise (notebook -> stub name -> :class:`~msvssm.exercises.core.Exercise`
with its check and the wrong answers it must reject); ``EXERCISES`` is the same as
notebook -> {stub name: check function}. The machinery is in :mod:`msvssm.exercises.core`.
"""
from __future__ import annotations

from . import nb00, nb01, nb02, nb03, nb04, nb05, nb06, nb07, nb08, nb09, nb10, nb11  # noqa: F401  (registers)
from .core import REGISTRY, Exercise, Result, check, exercise, exercises_of  # noqa: F401
from .nb00 import *  # noqa: F401,F403
from .nb01 import *  # noqa: F401,F403
from .nb02 import *  # noqa: F401,F403
from .nb03 import *  # noqa: F401,F403
from .nb04 import *  # noqa: F401,F403
from .nb05 import *  # noqa: F401,F403
from .nb06 import *  # noqa: F401,F403
from .nb07 import *  # noqa: F401,F403
from .nb08 import *  # noqa: F401,F403
from .nb09 import *  # noqa: F401,F403
from .nb10 import *  # noqa: F401,F403
from .nb11 import *  # noqa: F401,F403


class _ChecksView(dict):
    """notebook -> {stub name: check}, read from REGISTRY each time (exercises added later show up)."""

    def _fresh(self) -> dict:
        return {nb: {name: ex.check for name, ex in book.items()} for nb, book in sorted(REGISTRY.items())}

    def __getitem__(self, key):
        return self._fresh()[key]

    def __iter__(self):
        return iter(self._fresh())

    def __len__(self):
        return len(self._fresh())

    def items(self):
        return self._fresh().items()

    def keys(self):
        return self._fresh().keys()

    def values(self):
        return self._fresh().values()

    def __contains__(self, key):
        return key in self._fresh()


EXERCISES = _ChecksView()
