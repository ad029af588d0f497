"""Low-level operators: the selective scan (S6) and the 2D cross-scan."""
from .cross_scan import cross_merge, cross_scan, cross_unscan
from .selective_scan import available_scan_backends, selective_scan, selective_scan_reference

__all__ = ["cross_scan", "cross_unscan", "cross_merge", "selective_scan", "selective_scan_reference", "available_scan_backends"]
