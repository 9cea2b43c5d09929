"""Interpolation shared by the delay lines, modulated effects and wavetables (numba, inlined)."""
from __future__ import annotations

import numba


@numba.njit(cache=True, nogil=True, inline="always")
def hermite(zm1, z0, z1, z2, f):
    """Catmull-Rom (cubic Hermite) between z0 (f = 0) and z1 (f = 1); zm1, z2 the outer taps.

    Its gain is at most 1 at every f, so a modulated delay read through it
    cannot grow a feedback loop.
    """
    c1 = 0.5 * (z1 - zm1)
    c2 = zm1 - 2.5 * z0 + 2.0 * z1 - 0.5 * z2
    c3 = 0.5 * (z2 - zm1) + 1.5 * (z0 - z1)
    return ((c3 * f + c2) * f + c1) * f + z0
