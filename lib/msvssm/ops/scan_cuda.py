"""The ``cuda`` selective-scan backend: mamba-ssm's fused CUDA kernel.

Available only when three things hold, checked in this order:

1. ``mamba_ssm`` imports (it needs its compiled CUDA module and triton, so any
   failure is possible: the import is guarded with a broad ``except Exception``
   and the error text is kept for ``why_unavailable``);
2. a CUDA device is present;
3. the kernel really runs on that device: one tiny call (b=1, d=4, n=4, l=8,
   float32, grouped B/C with g=2, D, z, delta_bias, softplus), forward and
   backward, compared against the reference. An import can succeed while the
   first call fails: mamba-ssm built for another GPU architecture ("no kernel
   image is available"), a torch ABI mismatch that only shows at the call, or
   a mamba-ssm built from source after 2.3.2.post1 (commit f577286, 2026-07),
   where ``selective_scan_cuda`` is only compiled with ``MAMBA_KEEP_CUDA_BUILD=TRUE``
   and ``selective_scan_fn`` raises on its first call. The probe runs once per
   device index and is cached; :func:`kernel_status` reports every step (for
   ``msvssm info``).

Inputs are upcast to float32 before the call (as VMamba does, to avoid fp16/bf16
overflow under AMP) and ``y`` is cast back to the input dtype. mamba-ssm's kernel
has no float64 path, so float64 inputs are refused (use ``chunked``) rather than
silently computed in float32; so is a state size above the kernel's 256. B and C
go to the kernel in their own forms (grouped, variable or fixed) when it takes
that combination, else both are brought to one grouped form. What mamba-ssm's own
wrapper leaves to the caller is done here: ``delta_bias`` gets a unit stride (the
wrapper fixes the last stride of u/delta/B/C/z and D only), and when the length is
a multiple of the kernel's block (its 16-byte vector loads) rows of u, delta, z and
input-dependent B/C that do not start 16-byte aligned are copied. The whole
contract, with its sources, and a CPU stand-in that enforces it (the tests run
this wrapper through it): :mod:`.scan_cuda_contract`. mamba-ssm's last state
carries no gradient. Symbols: the glossary in :mod:`msvssm.ops`.
"""
from __future__ import annotations

import importlib.metadata

import torch
from torch import Tensor

from .registry import ScanBackend, register_backend
from .scan_common import grouped_bc

try:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _mamba_scan_fn

    _IMPORT_ERROR = ""
except Exception as exc:  # noqa: BLE001 - any failure means "not available"
    _mamba_scan_fn = None
    _IMPORT_ERROR = f"mamba_ssm does not import: {type(exc).__name__}: {exc}"

MAX_DSTATE = 256  # csrc/selective_scan/selective_scan.cpp: TORCH_CHECK(dstate <= 256)
HOW_TO_GET = (
    'pip install -e ".[gpu]" --no-build-isolation on the GPU machine, with the CUDA toolkit of torch\'s CUDA '
    "major version (README, GPU section)"
)
PROBE_TOL = 1e-3  # max |kernel - reference| / (1 + max |reference|) of the probe, forward and gradients

# device index -> result of the probe call (see _probe)
_PROBES: dict[int, dict] = {}


def _mamba_version() -> str | None:
    try:
        import mamba_ssm

        return str(getattr(mamba_ssm, "__version__", None))
    except Exception:  # noqa: BLE001
        return None


def _dist_version() -> str | None:
    """The installed mamba-ssm distribution's version, even when the package does not import."""
    for name in ("mamba_ssm", "mamba-ssm"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _extension_loaded() -> bool | None:
    """Whether mamba-ssm's compiled ``selective_scan_cuda`` module is there (None: mamba_ssm does not import)."""
    if _mamba_scan_fn is None:
        return None
    try:
        from mamba_ssm.ops import selective_scan_interface as iface
    except Exception:  # noqa: BLE001
        return None
    return getattr(iface, "selective_scan_cuda", None) is not None


def _probe_inputs(device: torch.device) -> dict:
    gen = torch.Generator().manual_seed(0)
    b, d, n, l, g = 1, 4, 4, 8, 2

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen) * scale

    x = dict(u=r(b, d, l), delta=r(b, d, l, scale=0.5), A=-(0.5 + torch.rand(d, n, generator=gen)),
             B=r(b, g, n, l), C=r(b, g, n, l), D=r(d), z=r(b, d, l), delta_bias=r(d, scale=0.5))
    return {k: v.to(device).requires_grad_() for k, v in x.items()}


def _max_rel_err(got: list[Tensor], want: list[Tensor]) -> float:
    err = 0.0
    for a, b in zip(got, want):
        a, b = a.detach().float(), b.detach().float()
        if not torch.isfinite(a).all():
            return float("inf")
        err = max(err, ((a - b).abs().max() / (1.0 + b.abs().max())).item())
    return err


def _probe(index: int) -> dict:
    """Call the kernel once on cuda:``index`` (cached): {"device", "device_name", "capability", "call_ok", ...}."""
    if index in _PROBES:
        return _PROBES[index]
    from .scan_reference import selective_scan_reference

    device = torch.device("cuda", index)
    result = {"device": str(device), "device_name": None, "capability": None, "call_ok": False, "call_error": "",
              "max_abs_err": None}
    try:
        result["device_name"] = torch.cuda.get_device_name(device)
        result["capability"] = "{}.{}".format(*torch.cuda.get_device_capability(device))
        # Also from inference_mode / no_grad callers (predict): the probe needs autograd.
        with torch.inference_mode(False), torch.enable_grad(), torch.autocast("cuda", enabled=False):
            x = _probe_inputs(device)
            args = (*x.values(), True)  # u, delta, A, B, C, D, z, delta_bias, delta_softplus
            y = _mamba_scan_fn(*args)
            y_ref = selective_scan_reference(*args)
            w = torch.linspace(-1.0, 1.0, y_ref.numel(), device=y_ref.device).reshape(y_ref.shape)
            leaves = list(x.values())
            grads = torch.autograd.grad((y * w).sum(), leaves)
            grads_ref = torch.autograd.grad((y_ref * w).sum(), leaves)
            if y.is_cuda:
                torch.cuda.synchronize(y.device)  # an asynchronous kernel error shows here
        result["max_abs_err"] = max(
            (y.detach() - y_ref.detach()).abs().max().item(),
            *((a - b).abs().max().item() for a, b in zip(grads, grads_ref)),
        )
        err = _max_rel_err([y, *grads], [y_ref, *grads_ref])
        if err <= PROBE_TOL:
            result["call_ok"] = True
        else:
            result["call_error"] = (
                f"wrong result: relative error {err:.3g} against the reference (tolerance {PROBE_TOL:g}), "
                f"max abs error {result['max_abs_err']:.3g}"
            )
    except Exception as exc:  # noqa: BLE001 - any failure of the call means "not available"
        text = " ".join(str(exc).split())
        result["call_error"] = f"{type(exc).__name__}: {text[:500]}"
    _PROBES[index] = result
    return result


def _probe_failure_text(probe: dict) -> str:
    version = _mamba_version() or "?"
    text = (
        f"mamba-ssm {version} imports but its kernel fails on {probe['device_name'] or probe['device']} "
        f"(capability {probe['capability'] or '?'}): {probe['call_error']}; rebuild mamba-ssm for this GPU: "
        f"{HOW_TO_GET}"
    )
    if _extension_loaded() is False:  # mamba-ssm built from source after 2.3.2.post1 without its CUDA scan
        text += "; this mamba-ssm has no selective_scan_cuda module: set MAMBA_KEEP_CUDA_BUILD=TRUE when installing it"
    return text


def _current_index() -> int:
    return torch.cuda.current_device()


def _is_available() -> bool:
    return _mamba_scan_fn is not None and torch.cuda.is_available() and _probe(_current_index())["call_ok"]


def _why_unavailable() -> str:
    if _mamba_scan_fn is None:
        return f"{_IMPORT_ERROR} (install the 'gpu' extra on a machine with CUDA: README, GPU section)"
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    probe = _probe(_current_index())
    return "" if probe["call_ok"] else _probe_failure_text(probe)


def kernel_status(device: int | str | torch.device | None = None) -> dict:
    """Every step of the ``cuda`` backend's availability, for ``msvssm info``.

    ``device``: the CUDA device to probe (default: the current one). Runs the probe
    call if it has not run yet on that device (a fraction of a second). Keys::

        importable      bool: mamba_ssm's selective_scan_fn imports
        import_error    str: why not ("" when it imports)
        version         mamba_ssm.__version__ when it imports, else None
        dist_version    the installed mamba-ssm distribution's version (None: not installed), even if it
                        does not import
        extension       bool: the compiled selective_scan_cuda module is there (None: mamba_ssm does not
                        import); False with mamba-ssm built from source after 2.3.2.post1 without
                        MAMBA_KEEP_CUDA_BUILD=TRUE
        cuda_available  bool: torch.cuda.is_available()
        device          "cuda:i" probed, or None
        device_name     the GPU's name, or None
        capability      "major.minor", or None
        call_ok         bool: the probe call ran and matched the reference (False when not attempted)
        call_error      str: why the call failed, or why it was not attempted ("" when it ran fine)
        max_abs_err     float: largest |kernel - reference| over y and the gradients (None: no result)
        available       bool: the backend is usable (the three steps above all passed)
        why_unavailable str: the reason the registry gives ("" when available)
    """
    status = {
        "importable": _mamba_scan_fn is not None,
        "import_error": _IMPORT_ERROR,
        "version": _mamba_version() if _mamba_scan_fn is not None else None,
        "dist_version": _dist_version(),
        "extension": _extension_loaded(),
        "cuda_available": torch.cuda.is_available(),
        "device": None,
        "device_name": None,
        "capability": None,
        "call_ok": False,
        "call_error": "",
        "max_abs_err": None,
        "available": False,
        "why_unavailable": "",
    }
    if not status["importable"]:
        status["call_error"] = "not attempted: mamba_ssm does not import"
        status["why_unavailable"] = _why_unavailable()
        return status
    if not status["cuda_available"]:
        status["call_error"] = "not attempted: no CUDA device"
        status["why_unavailable"] = _why_unavailable()
        return status
    if device is None:
        index = _current_index()
    else:
        dev = torch.device(device) if not isinstance(device, int) else torch.device("cuda", device)
        if dev.type != "cuda":
            raise ValueError(f"kernel_status probes a CUDA device; got {dev}")
        index = _current_index() if dev.index is None else dev.index
    probe = _probe(index)
    status.update({k: probe[k] for k in ("device", "device_name", "capability", "call_ok", "call_error",
                                         "max_abs_err")})
    status["available"] = probe["call_ok"]
    status["why_unavailable"] = "" if probe["call_ok"] else _probe_failure_text(probe)
    return status


def _f32(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.float()


def _vector_loads(l: int) -> bool:
    """Whether the kernel loads rows as 16-byte vectors: l a multiple of its block (kNThreads * kNItems).

    The block is 128, 256, 512, 1024 for l up to that size and 2048 above
    (selective_scan_fwd_cuda / selective_scan_bwd_cuda), so: l in {128, 256, 512, 1024} or a multiple of 2048.
    """
    block = 128 if l <= 128 else 256 if l <= 256 else 512 if l <= 512 else 1024 if l <= 1024 else 2048
    return l > 0 and l % block == 0


def _rows_aligned(t: Tensor) -> bool:
    """Unit last stride, and every row starts on a 16-byte boundary (start and outer strides)."""
    if t.shape[-1] > 1 and t.stride(-1) != 1:
        return False
    size = t.element_size()
    return t.data_ptr() % 16 == 0 and all((s * size) % 16 == 0 for s, n in zip(t.stride()[:-1], t.shape[:-1]) if n > 1)


def _for_kernel(t: Tensor | None, vector_loads: bool) -> Tensor | None:
    """float32; when the kernel loads rows as vectors, also unit last stride and 16-byte-aligned rows.

    mamba-ssm's kernel loads rows of u, delta, z and input-dependent B/C as 16-byte
    vectors when the length is a multiple of its block (:func:`_vector_loads`), so a
    view starting mid-row (``x[..., 1:]`` of a longer row) would be a misaligned-address
    error; its wrapper only makes the last stride 1. Copied only when needed.
    """
    if t is None:
        return None
    t = t.float()
    if vector_loads and not _rows_aligned(t):
        t = t.clone(memory_format=torch.contiguous_format)
    return t


def _kernel_takes(B: Tensor, C: Tensor) -> bool:
    """Whether mamba-ssm's kernel accepts this pair of forms as they are.

    Its group count comes from B when B is input-dependent, else it is 1; an
    input-dependent C must have that many groups ((b, n, l) counts as 1).
    """
    groups = lambda X: None if X.dim() == 2 else (1 if X.dim() == 3 else X.shape[1])  # noqa: E731
    gb, gc = groups(B), groups(C)
    return gc is None or gc == (1 if gb is None else gb)


def selective_scan_cuda(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
):
    """mamba-ssm's ``selective_scan_fn`` on float32 copies; same contract as the reference."""
    if _mamba_scan_fn is None:
        raise RuntimeError(_why_unavailable())
    if u.device.type == "cuda":
        probe = _probe(u.device.index if u.device.index is not None else _current_index())
        if not probe["call_ok"]:
            raise RuntimeError(_probe_failure_text(probe))
    if any(t.dtype == torch.float64 for t in (u, delta, A, B, C)):
        raise RuntimeError("the cuda scan backend (mamba-ssm) has no float64 kernel; use backend='chunked'")
    if A.shape[-1] > MAX_DSTATE:
        raise RuntimeError(
            f"the cuda scan backend (mamba-ssm) takes a state size n <= {MAX_DSTATE}; got n={A.shape[-1]} "
            "(use backend='chunked')"
        )
    dtype_in = u.dtype
    if not _kernel_takes(B, C):
        B, C = grouped_bc(B, C, *u.shape)
    vec = _vector_loads(u.shape[-1])
    B, C = (_for_kernel(X, vec) if X.dim() > 2 else X.float() for X in (B, C))
    out = _mamba_scan_fn(
        _for_kernel(u, vec), _for_kernel(delta, vec), A.float(), B, C,
        _f32(D), _for_kernel(z, vec),
        None if delta_bias is None else delta_bias.float().contiguous(),  # mamba-ssm needs stride 1, fixes only D
        delta_softplus, return_last_state,
    )
    if return_last_state:
        y, last_state = out
        return y.to(dtype_in), last_state.float()
    return out.to(dtype_in)


register_backend(ScanBackend("cuda", selective_scan_cuda, ("cuda",), _is_available, _why_unavailable))
