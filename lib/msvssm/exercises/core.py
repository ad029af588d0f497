"""The exercise machinery: calling a student's function safely, comparing numbers, the registry.

Each ``check_*`` (in ``nbNN.py``, one module per notebook) takes the student's function and returns
``(ok, message)``. It never raises: an unsolved stub (``NotImplementedError`` or ``None``), an
exception or a wrong value all give ``ok = False`` and a message saying what is wrong, so a notebook
runs top to bottom with the stubs unsolved.

A check is registered with :func:`exercise`, together with the plausible wrong answers it must
reject; ``tests/test_exercises.py`` runs every registered check with the solution
(``notebooks/solutions/NN_exercises.py``: passes), three stubs (not done) and each wrong answer
(rejected), and ``msvssm grade`` runs them on submitted notebooks.
"""
from __future__ import annotations

import functools
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

Result = tuple[bool, str]


@dataclass(frozen=True)
class Exercise:
    """One exercise: the stub's name in notebook ``notebook``, its check, the mistakes the check must catch."""

    notebook: str
    name: str
    check: Callable[[Callable], Result]
    wrong_answers: tuple[Callable, ...]

    @property
    def key(self) -> str:
        return f"{self.notebook}.{self.name}"


# Library modules an exercise must not call into (see _call_own)
SCAN_MODULES = ("msvssm.ops.scan", "msvssm.ops.scan_reference", "msvssm.ops.scan_chunked", "msvssm.ops.scan_numba",
                "msvssm.ops.cross_selective_scan")
CROSS_SCAN_MODULES = ("msvssm.ops.cross_scan", "msvssm.ops.cross_scan_numba", "msvssm.ops.cross_selective_scan")
SS2D_MODULES = ("msvssm.models.ss2d", "msvssm.ops.cross_selective_scan")
BLOCK_MODULES = ("msvssm.models.blocks",)

# notebook ("02") -> stub name ("zoh_B_bar") -> Exercise, in the order the notebook asks them
REGISTRY: dict[str, dict[str, Exercise]] = {}


def exercise(notebook: str, name: str, wrong: tuple[Callable, ...] = ()):
    """Register the decorated check as exercise ``name`` of ``notebook`` (``wrong``: plausible mistakes)."""

    def register(check_fn: Callable[[Callable], Result]) -> Callable[[Callable], Result]:
        book = REGISTRY.setdefault(notebook, {})
        if name in book:
            raise ValueError(f"exercise {notebook}.{name} is registered twice")
        book[name] = Exercise(notebook, name, check_fn, tuple(wrong))
        return check_fn

    return register


def exercises_of(notebook: str) -> dict[str, Exercise]:
    """The exercises of one notebook ("02" or a file name like "02_selective_scan.ipynb")."""
    key = str(notebook)[:2]
    return dict(REGISTRY.get(key, {}))


def _call(fn: Callable, *args, **kwargs):
    """(value, None) or (None, message) when the function is unsolved or fails."""
    try:
        value = fn(*args, **kwargs)
    except NotImplementedError:
        return None, "not solved yet (the stub raises NotImplementedError)"
    except Exception as exc:  # a student's bug: say which, never crash the notebook
        last = traceback.extract_tb(exc.__traceback__)[-1]
        return None, f"your function raised {type(exc).__name__}: {exc} (line {last.lineno})"
    if value is None:
        return None, "not solved yet (the function returned None)"
    return value, None


def _known_mistake(got, known, args, rtol: float, atol: float) -> str:
    """The hint of the first ``(wrong_fn, hint)`` of ``known`` whose answer on ``args`` matches ``got``, else ""."""
    for wrong, hint in known:
        try:
            with torch.no_grad():
                if torch.allclose(torch.as_tensor(got).double(), torch.as_tensor(wrong(*args)).double(),
                                  rtol=rtol, atol=atol):
                    return hint
        except RuntimeError:
            pass  # that mistake cannot run on these shapes
    return ""


@functools.lru_cache(maxsize=None)
def _module_files(modules: tuple[str, ...]) -> dict[str, str]:
    """{source file: module name} of library modules (imported to find them; computed once per tuple)."""
    import importlib

    files = {}
    for name in modules:
        module = importlib.import_module(name)
        files[str(Path(module.__file__).resolve())] = name
    return files


def _call_own(fn: Callable, forbid: Sequence[str], *args, **kwargs):
    """:func:`_call`, refusing an answer that calls into the library modules ``forbid`` (by their Python code).

    The exercises that ask a student to *write* a concept (the scan, the scan paths, SE per path, a
    DSPP branch, a parameter count) must not pass by calling the library's own version of it: a
    profile hook watches the student's call, and any Python function of those modules it enters turns
    the answer into "write it yourself". The check's own calls to the library happen outside the hook.
    """
    files = _module_files(tuple(forbid))
    entered: list[str] = []

    def hook(frame, event, arg):
        if event == "call":
            name = files.get(frame.f_code.co_filename)
            if name is not None and not entered:
                entered.append(f"{name}.{frame.f_code.co_name}")

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        value, err = _call(fn, *args, **kwargs)
    finally:
        sys.setprofile(previous)
    if entered and err is None:
        return None, (f"your function calls the library's {entered[0]}: write it yourself (the notebook uses "
                      "the library's version right after, once yours is checked)")
    return value, err


def _close(got, want, rtol: float = 1e-5, atol: float = 1e-6) -> tuple[bool, str]:
    try:
        got_t = torch.as_tensor(np.array(got, dtype=np.float64) if not torch.is_tensor(got) else got).double()
    except Exception as exc:
        return False, f"cannot read your answer as numbers ({type(exc).__name__}: {exc})"
    want_t = torch.as_tensor(want).double()
    if got_t.shape != want_t.shape:
        return False, f"shape {tuple(got_t.shape)}, expected {tuple(want_t.shape)}"
    if not torch.isfinite(got_t).all():
        return False, "your answer has NaN or inf"
    err = (got_t - want_t).abs()
    bad = err > atol + rtol * want_t.abs()
    if bad.any():
        i = int(bad.flatten().nonzero()[0])
        return False, (f"{int(bad.sum())} of {bad.numel()} values are off; e.g. element {i}: "
                       f"{got_t.flatten()[i].item():.6g}, expected {want_t.flatten()[i].item():.6g}")
    return True, ""


def check(check_fn: Callable[[Callable], Result], student_fn: Callable) -> bool:
    """Run ``check_fn(student_fn)`` and print "correct" or the message; returns ok (for notebooks)."""
    ok, message = check_fn(student_fn)
    print("correct" + (f": {message}" if message else "") if ok else f"not yet: {message}")
    return ok
