"""A CPU stand-in for mamba-ssm's ``selective_scan_fn`` that enforces its input contract.

The ``cuda`` backend (:mod:`.scan_cuda`) is a wrapper around mamba-ssm's fused
kernel that no GPU has run yet. :class:`ContractScan` takes the kernel's place on
any device: it does what mamba-ssm's Python wrapper does to its arguments, then
checks every condition its C++ entry point checks (and a few the kernel relies on
without checking), raising :class:`ContractError` naming the broken rule, and
computes the result with the project's reference loop, returning what the kernel
returns (``out`` in the dtype of ``u``; the last state in float32; gradients in the
dtype of each input, none through the last state). :func:`contract_cuda_backend`
plugs it into :mod:`.scan_cuda` for the length of a ``with`` block, so the
backend's own wrapper (upcasts, B/C forms, refusals) runs for real on CPU tensors.

Where the contract comes from (state-spaces/mamba, tag v2.3.2.post1 = a14b1df,
2026-05-09, and HEAD e9594ce, 2026-07-23; ``selective_scan.cpp`` is identical
in both except includes and the device guard, so its line numbers are the same;
the Python wrapper's are HEAD's, 12 lower at v2.3.2.post1)::

  mamba_ssm/ops/selective_scan_interface.py, SelectiveScanFn.forward (HEAD lines 37-61)
    40-51  u, delta, B, C, z made contiguous only when stride(-1) != 1; D always
           made contiguous; delta_bias untouched
    52-57  3-dim (b, n, l) B / C unsqueezed to (b, 1, n, l); 2-dim (d, n) passed as is
    58     out, x, *rest = selective_scan_cuda.fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    61     last_state = x[:, :, -1, 1::2]: float32 (x has A's dtype), and it gets no gradient
           (backward ignores its incoming gradient)
    SelectiveScanFn has no custom_fwd/custom_bwd (only MambaInnerFn has them), and the
    extension is a pybind function, not a dispatcher op, so autocast never casts its
    inputs: the dtypes that arrive are the dtypes checked below.
    backward (HEAD line 78): dout made contiguous only when stride(-1) != 1

  csrc/selective_scan/selective_scan.cpp, selective_scan_fwd
    235  u (input type) float32, float16 or bfloat16                     rule input_dtype
    236  A (weight type) float32 or complex64                             rule weight_dtype
    238  B / C "variable" when dim >= 3, else "fixed"
    242  delta has u's dtype                                              rule delta_dtype
    243  B: u's dtype when variable, A's dtype when fixed                 rule B_dtype
    244  C: the same                                                      rule C_dtype
    246-250, 283, 291, 301  every tensor is_cuda                          rule device
    252-253  u, delta stride(-1) == 1 (or size 1)                         rule stride
    255-260  b, d, l = u.sizes(); n = A.size(1); n_groups = B.size(1) if B is variable else 1
    262  n <= 256                                                          rule dstate
    264-266  u, delta (b, d, l); A (d, n)                                  rule shape
    267-272  B: fixed (d, n), or (b, n_groups, n, l) with stride(-1) == 1  rules B_shape, stride
    273-278  C: the same, with B's n_groups                                rules C_shape, C_groups
    280-286  D float32, stride(-1) == 1, (d,)                              rules D_dtype, stride, shape
    288-294  delta_bias float32, stride(-1) == 1, (d,)                     rules delta_bias_dtype, stride, shape
    298-305  z u's dtype, stride(-1) == 1, (b, d, l)                       rules z_dtype, stride, shape
    311  out = empty_like(delta): y comes back in u's dtype; with z, out_z = empty_like(z)
    313  x (b, d, n_chunks, 2n) in A's dtype, n_chunks = ceil(l / 2048)
  csrc/selective_scan/selective_scan.cpp, selective_scan_bwd
    362  dout has u's dtype;  373 dout stride(-1) == 1;  399 dout (b, d, l)    rules dout_*
    461-462, 488  dB / dC come back in B's / C's dtype

Conditions the kernel relies on without a TORCH_CHECK (breaking them is a wrong result,
an illegal memory access or a launch error, never a clear message):

  groups     d % n_groups == 0: selective_scan.cpp:93 dim_ngroups_ratio = dim / n_groups
             (integer division) and selective_scan_fwd_kernel.cuh:104 group_id = dim_id /
             dim_ngroups_ratio, so other d read groups past the end (n_groups > d divides by 0)
  same_device  only is_cuda is checked; the kernel runs on u's device (CUDAGuard, line 326)
             and reads every other pointer there
  empty      b, d, l >= 1: a zero grid is a launch error; l = 0 gives n_chunks = 0 and
             x[:, :, -1] fails in the wrapper
  alignment  when l is a multiple of the kernel's block (kNThreads * kNItems: 128, 256, 512,
             1024 for l up to that, 2048 above; selective_scan_fwd_cuda / _bwd_cuda and
             BOOL_SWITCH(params.seqlen % (kNThreads * kNItems) == 0, kIsEvenLen) at
             selective_scan_fwd_kernel.cuh:315), rows of u, delta, z, out and variable B / C
             are loaded as 16-byte vectors (selective_scan_common.h load_input / load_weight,
             vec_t of kNBytes * kNElts = 16 bytes): each row must start 16-byte aligned

Rules of this project, not mamba-ssm's, checked too:

  float64    no float64 anywhere (mamba-ssm has no float64 kernel: 235/236/282/290 reject
             it with a bare "Expected ... to be true" message; the wrapper must refuse it first)
  complex    no complex tensors (mamba-ssm takes complex64 A with complex B/C; msvssm does not)
  autocast   autocast off inside the call, for cpu and for the tensors' device type
             (msvssm runs every backend with autocast off, :func:`msvssm.ops.selective_scan`;
             mamba-ssm itself would not notice, see above)

Version notes: every tag up to v2.3.2.post1 imports ``selective_scan_cuda`` unconditionally
(an ImportError at import when it is missing); HEAD (commit f577286, "Make CUDA selective
scan install explicit opt-in", 2026-07-07) imports it in ``try/except ImportError``, builds
it only with ``MAMBA_KEEP_CUDA_BUILD=TRUE``, and raises RuntimeError("selective_scan_cuda is
not installed ...") on the first call, so ``import mamba_ssm`` can succeed and the first
call fail; :func:`msvssm.ops.scan_cuda.kernel_status` probes a real call for that reason.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor

from . import registry

MAX_DSTATE = 256
SOURCE = "state-spaces/mamba v2.3.2.post1 (a14b1df) / HEAD e9594ce"
CPP = "csrc/selective_scan/selective_scan.cpp"
PY = "mamba_ssm/ops/selective_scan_interface.py"

# rule -> where it comes from (printed in every error)
RULES: dict[str, str] = {
    "autocast": "msvssm: backends run with autocast off (msvssm.ops.selective_scan)",
    "float64": f"{CPP}:235/236/282/290: no float64 kernel",
    "complex": "msvssm: real-valued scans only (mamba-ssm's complex mode is not supported)",
    "input_dtype": f"{CPP}:235 TORCH_CHECK(input_type == Float || Half || BFloat16)",
    "weight_dtype": f"{CPP}:236 TORCH_CHECK(weight_type == Float || ComplexFloat)",
    "delta_dtype": f"{CPP}:242 TORCH_CHECK(delta.scalar_type() == input_type)",
    "B_dtype": f"{CPP}:243 TORCH_CHECK(B.scalar_type() == (!is_variable_B ? weight_type : input_type))",
    "C_dtype": f"{CPP}:244 TORCH_CHECK(C.scalar_type() == (!is_variable_C ? weight_type : input_type))",
    "D_dtype": f"{CPP}:282 TORCH_CHECK(D.scalar_type() == at::ScalarType::Float)",
    "delta_bias_dtype": f"{CPP}:290 TORCH_CHECK(delta_bias.scalar_type() == at::ScalarType::Float)",
    "z_dtype": f"{CPP}:300 TORCH_CHECK(z.scalar_type() == input_type)",
    "device": f"{CPP}:246-250/283/291/301 TORCH_CHECK(x.is_cuda())",
    "same_device": f"not checked by mamba-ssm: the kernel runs on u's device ({CPP}:326 CUDAGuard)",
    "stride": f"{CPP}:252/253/271/277/284/292/302 TORCH_CHECK(x.stride(-1) == 1 || x.size(-1) == 1), "
              f"after {PY} SelectiveScanFn.forward made u/delta/B/C/z (if stride(-1) != 1) and D contiguous",
    "dstate": f"{CPP}:262 TORCH_CHECK(dstate <= 256)",
    "shape": f"{CPP}:264-266/285/293/303 CHECK_SHAPE",
    "B_shape": f"{CPP}:268/270 CHECK_SHAPE(B, dim, dstate) or (batch, n_groups, dstate, seqlen), "
               f"after {PY} unsqueezed a 3-dim B to (b, 1, n, l)",
    "C_shape": f"{CPP}:274/276 CHECK_SHAPE(C, dim, dstate) or (batch, n_groups, dstate, seqlen), "
               f"after {PY} unsqueezed a 3-dim C to (b, 1, n, l)",
    "C_groups": f"{CPP}:260/276 n_groups = B.size(1) if B is variable else 1; a variable C must have as many",
    "groups": f"not checked by mamba-ssm: {CPP}:93 dim_ngroups_ratio = dim / n_groups, "
              "selective_scan_fwd_kernel.cuh:104 group_id = dim_id / dim_ngroups_ratio",
    "empty": "not checked by mamba-ssm: a zero grid fails to launch, l = 0 leaves x[:, :, -1] out of range",
    "alignment": "not checked by mamba-ssm: rows of even lengths are loaded as 16-byte vectors "
                 "(selective_scan_common.h load_input / load_weight when kIsEvenLen)",
    "dout_dtype": f"{CPP}:362 TORCH_CHECK(dout.scalar_type() == input_type)",
    "dout_shape": f"{CPP}:399 CHECK_SHAPE(dout, batch_size, dim, seqlen)",
}


class ContractError(RuntimeError):
    """An input mamba-ssm's kernel would refuse (or mis-handle). ``rule`` is a key of :data:`RULES`.

    A RuntimeError, as mamba-ssm's TORCH_CHECK failures are.
    """

    def __init__(self, rule: str, detail: str):
        self.rule = rule
        super().__init__(f"mamba-ssm contract [{rule}]: {detail} ({RULES[rule]}; {SOURCE})")


def kernel_block(l: int) -> int:
    """kNThreads * kNItems of the launch mamba-ssm picks for length ``l`` (selective_scan_fwd_cuda, CUDA)."""
    return 128 if l <= 128 else 256 if l <= 256 else 512 if l <= 512 else 1024 if l <= 1024 else 2048


def vector_loads(l: int) -> bool:
    """Whether the kernel loads rows as 16-byte vectors (kIsEvenLen): l a multiple of its block."""
    return l > 0 and l % kernel_block(l) == 0


def autocast_on(device_type: str) -> bool:
    """Whether autocast is enabled for ``device_type`` here (torch >= 2.4 API, with the older fallbacks)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled() if device_type == "cuda" else False


def mirror_wrapper(u, delta, A, B, C, D=None, z=None, delta_bias=None):
    """What ``SelectiveScanFn.forward`` does before calling the extension (HEAD lines 40-57), in autograd."""
    if u.stride(-1) != 1:
        u = u.contiguous()
    if delta.stride(-1) != 1:
        delta = delta.contiguous()
    if D is not None:
        D = D.contiguous()
    if B.stride(-1) != 1:
        B = B.contiguous()
    if C.stride(-1) != 1:
        C = C.contiguous()
    if z is not None and z.stride(-1) != 1:
        z = z.contiguous()
    if B.dim() == 3:
        B = B.unsqueeze(1)  # rearrange(B, "b dstate l -> b 1 dstate l")
    if C.dim() == 3:
        C = C.unsqueeze(1)
    return u, delta, A, B, C, D, z, delta_bias


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _rows_aligned(t: Tensor) -> bool:
    size = t.element_size()
    return t.data_ptr() % 16 == 0 and all((s * size) % 16 == 0 for s, n in zip(t.stride()[:-1], t.shape[:-1]) if n > 1)


def check_contract(u, delta, A, B, C, D=None, z=None, delta_bias=None, *, devices=("cuda",)) -> None:
    """Raise :class:`ContractError` for the first broken rule; arguments as the extension gets them.

    That is, after :func:`mirror_wrapper` (B and C are 2-dim fixed or 4-dim variable).
    ``devices``: the device types that count as "is_cuda" (the stand-in's own, e.g. ``("cpu",)``).
    """
    named = {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "delta_bias": delta_bias}
    present = {k: t for k, t in named.items() if t is not None}
    for dev in sorted({"cpu", u.device.type}):
        if autocast_on(dev):
            raise ContractError("autocast", f"autocast is enabled for {dev!r} inside the call")
    f64 = [k for k, t in present.items() if t.dtype == torch.float64]
    if f64:
        raise ContractError("float64", f"float64 tensors: {', '.join(f64)}")
    cplx = [k for k, t in present.items() if t.is_complex()]
    if cplx:
        raise ContractError("complex", f"complex tensors: {', '.join(cplx)}")
    input_type, weight_type = u.dtype, A.dtype
    if input_type not in (torch.float32, torch.float16, torch.bfloat16):
        raise ContractError("input_dtype", f"u is {input_type}; the kernel takes float32, float16 or bfloat16")
    if weight_type != torch.float32:
        raise ContractError("weight_dtype", f"A is {weight_type}; the kernel takes float32 (or complex64)")
    if delta.dtype != input_type:
        raise ContractError("delta_dtype", f"delta is {delta.dtype} but u is {input_type}")
    for name, X in (("B", B), ("C", C)):
        variable = X.dim() >= 3
        want = input_type if variable else weight_type
        if X.dtype != want:
            form = "input-dependent (dim >= 3): u's dtype" if variable else "fixed (dim 2): A's dtype"
            raise ContractError(f"{name}_dtype", f"{name} is {X.dtype}; {form} {want}")
    for name, t in present.items():
        if t.device.type not in devices:
            raise ContractError("device", f"{name} is on {t.device}; the kernel takes {'/'.join(devices)} tensors")
    for name, t in present.items():
        if t.device != u.device:
            raise ContractError("same_device", f"{name} is on {t.device} but u is on {u.device}")
    for name in ("u", "delta"):
        t = named[name]
        if t.dim() and t.stride(-1) != 1 and t.shape[-1] != 1:
            raise ContractError("stride", f"{name}.stride(-1) = {t.stride(-1)}")
    if u.dim() != 3:
        raise ContractError("shape", f"u must be (b, d, l); got {_shape(u)}")
    b, d, l = u.shape
    if A.dim() != 2:
        raise ContractError("shape", f"A must be (d={d}, n); got {_shape(A)}")
    n = A.shape[1]
    if n > MAX_DSTATE:
        raise ContractError("dstate", f"state size n={n} > {MAX_DSTATE}")
    if _shape(delta) != (b, d, l):
        raise ContractError("shape", f"delta must be (b, d, l) = {(b, d, l)}; got {_shape(delta)}")
    if _shape(A) != (d, n):
        raise ContractError("shape", f"A must be (d, n) = {(d, n)}; got {_shape(A)}")
    n_groups = B.shape[1] if B.dim() >= 3 else 1  # selective_scan.cpp:260
    for name, X in (("B", B), ("C", C)):
        if X.dim() < 3:
            if _shape(X) != (d, n):
                raise ContractError(f"{name}_shape", f"fixed {name} must be (d, n) = {(d, n)}; got {_shape(X)}")
            continue
        if X.dim() != 4 or X.shape[0] != b or _shape(X)[2:] != (n, l):
            raise ContractError(
                f"{name}_shape",
                f"input-dependent {name} must be (b, g, n, l) = ({b}, g, {n}, {l}) after the wrapper's "
                f"3-dim unsqueeze; got {_shape(X)}",
            )
        if name == "C" and X.shape[1] != n_groups:
            raise ContractError(
                "C_groups",
                f"C has {X.shape[1]} groups but the kernel takes {n_groups} "
                f"({'from B' if B.dim() >= 3 else 'B is fixed, so 1'})",
            )
        if X.stride(-1) != 1 and X.shape[-1] != 1:
            raise ContractError("stride", f"{name}.stride(-1) = {X.stride(-1)}")
    if n_groups == 0 or d % n_groups:
        raise ContractError("groups", f"d={d} channels are not divisible by the {n_groups} groups of B/C")
    for name, t, want_dtype in (("D", D, torch.float32), ("delta_bias", delta_bias, torch.float32),
                                ("z", z, input_type)):
        if t is None:
            continue
        if t.dtype != want_dtype:
            raise ContractError(f"{name}_dtype", f"{name} is {t.dtype}; the kernel takes {want_dtype}")
        if t.dim() and t.stride(-1) != 1 and t.shape[-1] != 1:
            raise ContractError(
                "stride", f"{name}.stride(-1) = {t.stride(-1)} (mamba-ssm's wrapper does not fix it for {name})"
            )
        want_shape = (b, d, l) if name == "z" else (d,)
        if _shape(t) != want_shape:
            raise ContractError("shape", f"{name} must be {want_shape}; got {_shape(t)}")
    if min(b, d, l) < 1:
        raise ContractError("empty", f"b, d, l = {b}, {d}, {l}: every size must be >= 1")
    if vector_loads(l):
        rows = [("u", u), ("delta", delta), ("z", z)] + [(k, X) for k, X in (("B", B), ("C", C)) if X.dim() >= 3]
        for name, t in rows:
            if t is not None and not _rows_aligned(t):
                raise ContractError(
                    "alignment",
                    f"l={l} is a multiple of the kernel's block {kernel_block(l)}, so rows are loaded as 16-byte "
                    f"vectors, but {name}'s rows do not all start 16-byte aligned "
                    f"(data_ptr % 16 = {t.data_ptr() % 16}, strides {t.stride()})",
                )


class _ContractFn(torch.autograd.Function):
    """The extension's stand-in: forward and backward through the reference, mamba-ssm's outputs and checks."""

    @staticmethod
    def forward(ctx, owner, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
        from .scan_reference import selective_scan_reference

        inputs = (u, delta, A, B, C, D, z, delta_bias)
        leaves = tuple(None if t is None else t.detach().requires_grad_(t.requires_grad) for t in inputs)
        with torch.enable_grad(), torch.autocast("cpu", enabled=False), \
                torch.autocast(u.device.type, enabled=False):
            y, last = selective_scan_reference(*leaves, delta_softplus=delta_softplus, return_last_state=True)
        ctx.owner, ctx.y, ctx.leaves = owner, y, leaves
        ctx.input_type, ctx.shape = u.dtype, tuple(u.shape)
        out = y.detach().to(u.dtype)  # empty_like(delta) (or empty_like(z)): u's dtype
        last_state = last.detach().float()  # x has A's dtype (float32)
        return (out, last_state) if return_last_state else out

    @staticmethod
    def backward(ctx, dout, *unused_last_state_grad):  # mamba-ssm ignores the last state's gradient
        owner = ctx.owner
        owner.backward_calls += 1
        if dout.stride(-1) != 1:  # SelectiveScanFn.backward
            dout = dout.contiguous()
        if dout.dtype != ctx.input_type:
            raise ContractError("dout_dtype", f"dout is {dout.dtype} but u is {ctx.input_type}")
        if tuple(dout.shape) != ctx.shape:
            raise ContractError("dout_shape", f"dout must be {ctx.shape}; got {tuple(dout.shape)}")
        wanted = [i for i, t in enumerate(ctx.leaves) if t is not None and t.requires_grad]
        grads: list[Tensor | None] = [None] * len(ctx.leaves)
        if wanted:
            with torch.autocast("cpu", enabled=False), torch.autocast(dout.device.type, enabled=False):
                got = torch.autograd.grad(ctx.y, [ctx.leaves[i] for i in wanted], dout.to(ctx.y.dtype),
                                          retain_graph=True, allow_unused=True)
            for i, g in zip(wanted, got):
                grads[i] = g if g is not None else torch.zeros_like(ctx.leaves[i])
        return (None, *grads, None, None)


class ContractScan:
    """Callable like mamba-ssm's ``selective_scan_fn``: the contract checked, the reference computed.

    ``devices``: device types accepted as the kernel's ("cuda" for the real one). Counters:
    ``calls`` (every call), ``accepted`` (calls that passed the contract), ``backward_calls``,
    ``rejected`` (the rule of every refused call, in order), ``seen`` (per accepted call,
    the dtypes and shapes the "extension" received).
    """

    def __init__(self, devices: tuple[str, ...] = ("cpu",)):
        self.devices = tuple(devices)
        self.calls = 0
        self.accepted = 0
        self.backward_calls = 0
        self.rejected: list[str] = []
        self.seen: list[dict] = []

    def __call__(self, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                 return_last_state=False):
        self.calls += 1
        args = mirror_wrapper(u, delta, A, B, C, D, z, delta_bias)
        try:
            check_contract(*args, devices=self.devices)
        except ContractError as err:
            self.rejected.append(err.rule)
            raise
        self.accepted += 1
        self.seen.append({k: (None if t is None else (t.dtype, tuple(t.shape)))
                          for k, t in zip(("u", "delta", "A", "B", "C", "D", "z", "delta_bias"), args)})
        return _ContractFn.apply(self, *args, bool(delta_softplus), bool(return_last_state))

    def reset(self) -> None:
        self.__init__(self.devices)


@contextlib.contextmanager
def contract_cuda_backend(devices: tuple[str, ...] = ("cpu",)) -> Iterator[ContractScan]:
    """Run the ``cuda`` backend with :class:`ContractScan` in place of mamba-ssm's kernel, on ``devices``.

    Inside the block, ``backend="cuda"`` (or a model's ``scan_backend="cuda"``) on tensors
    of those device types runs :func:`msvssm.ops.scan_cuda.selective_scan_cuda`, the
    backend's real wrapper, whose only replaced part is the kernel it calls
    (``scan_cuda._mamba_scan_fn``). The backend is registered with ``replace=True`` as
    available on ``devices``; the previous backend, kernel and probe cache come back
    afterwards. Yields the stand-in, whose counters show it ran::

        with contract_cuda_backend() as kernel:
            model(x).sum().backward()
        assert kernel.accepted and kernel.backward_calls
    """
    from . import scan_cuda

    stand_in = ContractScan(devices)
    backend = registry.ScanBackend("cuda", scan_cuda.selective_scan_cuda, tuple(devices), lambda: True, lambda: "")
    saved_fn, saved_probes = scan_cuda._mamba_scan_fn, dict(scan_cuda._PROBES)
    scan_cuda._mamba_scan_fn = stand_in
    scan_cuda._PROBES.clear()  # a probe on a real GPU inside the block calls the stand-in, not the kernel
    try:
        with registry.temporary_backend(backend, replace=True):
            yield stand_in
    finally:
        scan_cuda._mamba_scan_fn = saved_fn
        scan_cuda._PROBES.clear()
        scan_cuda._PROBES.update(saved_probes)
