"""Low-level operators: the selective scan (S6) and the 2D cross-scan.

Glossary, the one list of symbols for ``msvssm.ops`` (code name: meaning, paper /
Mamba symbol). Widths of feature maps are ``channels``; the capital letters
``D`` and ``C`` are only ever the skip and the output matrix::

    b          batch size                                   B in Mamba's Algorithm 2
    l          sequence length (height * width in SS2D)     L
    d          channels of one scan call                    D in mamba-ssm's selective_scan_fn;
               (SS2D: K * d_inner, all directions stacked)
    d_inner    channels of one direction inside SS2D        E * D_model in Mamba (ssm_ratio * width)
    g          groups sharing B_t and C_t (d // g channels  G in mamba-ssm (ngroups);
               per group; SS2D: g = K, 1D Mamba: g = 1)
    n          state size per channel                       N (d_state)
    K          scan directions of the cross-scan (4)        K in VMamba
    channels   width of a feature map                       C of a stage in the paper
    height, width  spatial size of a feature map

    u          input            (b, d, l)                   x_t
    delta      step size        (b, d, l)                   Δ_t (after + delta_bias, softplus)
    delta_bias bias of Δ        (d,)
    A          state matrix     (d, n)                      A (negative: a decay)
    B          input matrix     (b, g, n, l) grouped        B_t (input-dependent: "selective")
                                (b, n, l)    variable (g = 1)
                                (d, n)       fixed (input-independent)
    C          output matrix    same three forms as B       C_t
    D          skip             (d,)                        D
    z          gate             (b, d, l)                   y * silu(z)
    h          state            (b, d, n)                   h_t
    y          output           (b, d, l)                   y_t

Discretisation: zero-order hold for A (Ā = exp(Δ A)), Euler for B (B̄ = Δ B).
"""
from .cross_scan import cross_merge, cross_scan, cross_scan_per_direction, cross_unscan
from .cross_selective_scan import cross_selective_scan, cross_selective_scan_reference
from .scan import available_scan_backends, selective_scan, selective_scan_reference
from .threads import cpu_threads

__all__ = ["cross_scan", "cross_unscan", "cross_merge", "cross_scan_per_direction", "cross_selective_scan",
           "cross_selective_scan_reference", "selective_scan", "selective_scan_reference", "available_scan_backends",
           "cpu_threads"]
