"""Flush-to-zero for subnormal floats, for every thread of a service process.

Trained weights hold subnormal values (|x| < 1.2e-38: weights that training drove towards zero),
and products of small activations underflow into the subnormal range. Intel cores compute on subnormals through
a microcode assist that costs ~100x a normal operation: the DLRM ranker took 8-11 ms for 500 candidates
instead of 1.1 ms (see docs/benchmarks.md). Setting the flush-to-zero and denormals-are-zero bits makes such
values exact zeros, a change far below float32 resolution at the scores' scale.

The bits live in a per-thread register (MXCSR on x86-64, FPCR on AArch64). POSIX threads inherit the
floating-point environment of the thread that creates them, so calling `flush_denormals_to_zero` first thing
in a process covers the thread pools, onnxruntime and OpenBLAS threads created after it. It goes through
glibc's `fegetenv`/`fesetenv` (no compiled extension, no torch import).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

import numpy as np

log = logging.getLogger(__name__)

# Where glibc keeps the SIMD control register inside fenv_t, and the bits that flush subnormals.
_X86_64_MXCSR_OFFSET = 28  # fenv_t: x87 environment (28 bytes), then __mxcsr
_X86_64_FTZ_DAZ = 0x8000 | 0x0040  # MXCSR flush-to-zero (bit 15) | denormals-are-zero (bit 6)
_AARCH64_FPCR_OFFSET = 0  # fenv_t: __fpcr, __fpsr
_AARCH64_FZ = 1 << 24  # FPCR flush-to-zero
_FENV_T_SIZE = 64  # larger than fenv_t on either architecture


def _layout() -> tuple[int, int] | None:
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return _X86_64_MXCSR_OFFSET, _X86_64_FTZ_DAZ
    if machine in ("aarch64", "arm64"):
        return _AARCH64_FPCR_OFFSET, _AARCH64_FZ
    return None


def _libm() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("m")
    return ctypes.CDLL(name) if name else None


def flush_denormals_to_zero() -> bool:
    """Sets flush-to-zero on the calling thread (and so on every thread it creates from now on).

    Returns whether it took effect; on a platform without a known layout it logs and leaves the default."""
    layout = _layout() if platform.system() == "Linux" else None
    libm = _libm() if layout is not None else None
    if layout is None or libm is None:
        log.info("flush-to-zero not set: no known floating-point environment layout for %s", platform.platform())
        return False
    offset, bits = layout
    env = (ctypes.c_ubyte * _FENV_T_SIZE)()
    if libm.fegetenv(ctypes.byref(env)) != 0:
        return False
    register = ctypes.c_uint32.from_buffer(env, offset)
    register.value |= bits
    return bool(libm.fesetenv(ctypes.byref(env)) == 0 and denormals_flushed())


def denormals_flushed() -> bool:
    """Whether the calling thread flushes subnormal results to zero (measured, not read from a register)."""
    smallest_normal = np.float32(np.finfo(np.float32).tiny)
    return bool(smallest_normal * np.float32(0.5) == 0.0)
