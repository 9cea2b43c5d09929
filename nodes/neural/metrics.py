"""Audio metrics shared by the neural generators (SING, the VAE): numpy only, no torch.

:func:`multires_log_spectral_distance` compares two sounds by their
log-power spectrograms at several resolutions (short windows see attacks,
long ones see partials), the way the generators' spectral losses do
(Défossez et al. 2018; Engel et al. 2020's multi-scale spectral loss), but
in decibels, so a number reads as "on average the spectra differ by so many
dB per time-frequency cell".
"""
from __future__ import annotations

import numpy as np

#: window lengths (samples) of the default resolutions; hop is a quarter of each
DEFAULT_FFTS = (2048, 1024, 512, 256)
#: cells quieter than this (dB below a full-scale sine) count as this: silence equals silence
DEFAULT_FLOOR_DB = -80.0


def log_power_spectrogram(x, n_fft: int, hop: int | None = None, floor_db: float = DEFAULT_FLOOR_DB) -> np.ndarray:
    """Log power (dB, 0 dB = a full-scale sine's peak bin) of Hann-windowed frames, floored at ``floor_db``.

    Frames start at sample 0 and step by ``hop`` (default ``n_fft // 4``);
    the signal is zero-padded to whole frames. Shape ``(frames, n_fft // 2 + 1)``.
    """
    x = np.asarray(x, np.float64).reshape(-1)
    hop = int(hop or n_fft // 4)
    n = max(1, int(np.ceil(max(x.size - n_fft, 0) / hop)) + 1)
    pad = np.zeros((n - 1) * hop + n_fft)
    pad[:x.size] = x[:pad.size]
    frames = np.lib.stride_tricks.sliding_window_view(pad, n_fft)[::hop][:n]
    w = np.hanning(n_fft + 1)[:-1]
    p = np.abs(np.fft.rfft(frames * w, axis=1)) ** 2
    ref = (0.5 * np.sum(w)) ** 2  # a full-scale sine on a bin
    return np.maximum(10.0 * np.log10(p / ref + 1e-30), floor_db)


def multires_log_spectral_distance(a, b, sr: float = 16000, ffts=DEFAULT_FFTS,
                                   floor_db: float = DEFAULT_FLOOR_DB) -> float:
    """Mean absolute difference (dB) between the log-power spectrograms of ``a`` and ``b``, over resolutions.

    Args:
        a, b: mono signals (any length; the longer is cut to the shorter).
        sr: their sample rate (Hz). The window lengths ``ffts`` are given at
            16 kHz and scaled with ``sr`` so that a resolution means the same
            duration at any rate (2048, 1024, 512, 256 samples: 128 to 16 ms).
        ffts: window lengths at 16 kHz; hop is a quarter window.
        floor_db: both spectrograms are floored here (dB below a full-scale
            sine), so silence against silence costs nothing and noise far
            below the note does not dominate.

    Returns the mean over resolutions of the mean over time-frequency cells
    of ``|A_dB - B_dB|``: 0 for identical signals, symmetric, in dB.
    """
    a = np.asarray(a, np.float64).reshape(-1)
    b = np.asarray(b, np.float64).reshape(-1)
    n = min(a.size, b.size)
    if n == 0:
        raise ValueError("multires_log_spectral_distance: empty signal")
    a, b = a[:n], b[:n]
    scale = float(sr) / 16000.0
    out = []
    for f in ffts:
        nf = max(16, int(round(f * scale)))
        A = log_power_spectrogram(a, nf, max(1, nf // 4), floor_db)
        B = log_power_spectrogram(b, nf, max(1, nf // 4), floor_db)
        out.append(float(np.mean(np.abs(A - B))))
    return float(np.mean(out))




def partial_cents(x, sr: float, f0: float, t0: float = 0.25, t1: float = 1.4, search: float = 100.0) -> float:
    """Cents from ``f0`` of the strongest partial within ``search`` cents of it, between ``t0`` and ``t1`` s.

    A pitch measure for sounds whose partials are not harmonic (a bell): a
    period tracker such as YIN lands on a common subperiod of the partials
    (a bell's render reads one or two octaves low), whereas the partial at
    the pitch is what the pitch sets. The segment is Hann-windowed and
    zero-padded to 8 times its length; the peak bin is refined by a
    parabola through the log magnitudes of it and its neighbours.
    """
    x = np.asarray(x, np.float64).reshape(-1)[int(t0 * sr):int(t1 * sr)]
    if x.size < 16:
        raise ValueError("partial_cents: segment too short")
    n = 8 * x.size
    mag = np.abs(np.fft.rfft(x * np.hanning(x.size), n))
    f = np.arange(mag.size) * sr / n
    lo, hi = f0 * 2.0 ** (-search / 1200.0), f0 * 2.0 ** (search / 1200.0)
    idx = np.nonzero((f >= lo) & (f <= hi))[0]
    k = int(idx[np.argmax(mag[idx])])
    if 0 < k < mag.size - 1:
        a, b, c = np.log(mag[k - 1:k + 2] + 1e-30)
        d = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) < 0 else 0.0
    else:
        d = 0.0
    return float(1200.0 * np.log2((k + d) * sr / n / f0))


__all__ = ["multires_log_spectral_distance", "log_power_spectrogram", "partial_cents", "DEFAULT_FFTS", "DEFAULT_FLOOR_DB"]
