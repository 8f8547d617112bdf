"""The smooth stage: a vectorised One-Euro filter, a zero-lag forward-backward variant, per-bone-group presets
for the `smoothing = "off"|"light"|"medium"|"strong"` setting, and the camera-aware smoothing the solve runs.

`smooth_camera_keypoints` is what the solve uses: outliers are first replaced by their neighbours' median
(so they are not averaged into them), then every keypoint is split into where it is in the image (its
camera ray) and how far along that ray (relative to the hips, and the hips' own depth): the image position is
what the 2D evidence pins down; depth is a monocular network's noisiest axis (4-5x the lateral noise on real
output) and is smoothed harder. Offline ("zero_lag", the solve's default) each kind gets a Whittaker smoother (a
discrete smoothing spline) whose width is the larger of a number of frames and a time (RAY_SIGMA, DEPTH_SIGMA:
frame-to-frame noise takes frames to remove at any rate, while a fast take is not smoothed less per second),
given as the Gaussian that halves the same frequencies; "one_euro" is the causal filter a live
capture sees, its settings per second, depth slower (DEPTH_SCALE, ROOT_DEPTH_SCALE) with a damped speed response.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .skeleton import KEYPOINT_GROUPS, MHR70_INDEX, NUM_KEYPOINTS

_HIP_KEYPOINTS = (MHR70_INDEX["left_hip"], MHR70_INDEX["right_hip"])

SMOOTHING_LEVELS = ("off", "light", "medium", "strong")
SMOOTHING_METHODS = ("one_euro", "zero_lag")


class FilterError(ValueError):
    """A smoothing setting the filters do not know; the message lists the valid values."""


@dataclass(frozen=True)
class OneEuroParams:
    """One-Euro settings: min_cutoff (Hz) sets smoothing at rest, beta (1/m) how fast the cutoff opens with
    speed (cutoff = min_cutoff + beta * |speed in m/s|), d_cutoff (Hz) smooths the speed estimate."""

    min_cutoff: float
    beta: float
    d_cutoff: float = 1.0


# "medium" per bone group. beta = 3 opens the cutoff quickly with speed: on CMU 01_01 (hopping, 30 fps)
# with 20 mm noise, beta 1 made the causal filter lag so much that its error rose above the raw noise.
# The pelvis and torso carry root motion, where jitter shows most, so they sit lowest; fingers highest.
_MEDIUM = {
    "root": OneEuroParams(1.0, 3.0),
    "torso": OneEuroParams(1.0, 3.0),
    "head": OneEuroParams(1.2, 3.0),
    "arms": OneEuroParams(1.5, 3.0),
    "legs": OneEuroParams(1.5, 3.0),
    "fingers": OneEuroParams(2.0, 3.0),
}
# Strength scales the resting cutoff: halving it roughly doubles the averaging window.
_STRENGTH_SCALE = {"light": 2.0, "medium": 1.0, "strong": 0.5}


def group_params(strength: str) -> dict[str, OneEuroParams]:
    """The One-Euro settings per bone group for a strength ("light", "medium", "strong")."""
    if strength not in _STRENGTH_SCALE:
        raise FilterError(f"smoothing strength {strength!r} is not one of {SMOOTHING_LEVELS}")
    scale = _STRENGTH_SCALE[strength]
    return {
        group: OneEuroParams(params.min_cutoff * scale, params.beta, params.d_cutoff)
        for group, params in _MEDIUM.items()
    }


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroStream:
    """The causal One-Euro filter one sample at a time (live capture), vectorised over the channels.

    shape: one sample's shape (e.g. (70, 3)); min_cutoff, beta, d_cutoff: scalars or arrays broadcasting to
    `shape`. `step(sample, dt)` filters the next sample, `dt` seconds after the previous one (live frames come
    unevenly); NaN samples pass through as NaN and reset their channel. `one_euro` is this run over an array.
    """

    def __init__(self, shape: tuple[int, ...], min_cutoff, beta, d_cutoff=1.0) -> None:
        self.min_cutoff = np.broadcast_to(np.asarray(min_cutoff, dtype=np.float64), shape)
        self.beta = np.broadcast_to(np.asarray(beta, dtype=np.float64), shape)
        self.d_cutoff = np.broadcast_to(np.asarray(d_cutoff, dtype=np.float64), shape)
        self.previous = np.full(shape, np.nan)
        self.derivative = np.zeros(shape)

    def step(self, sample: np.ndarray, dt: float) -> np.ndarray:
        """The filtered sample (float64, `shape`)."""
        sample = np.asarray(sample, dtype=np.float64)
        fresh = ~np.isfinite(self.previous)
        raw_derivative = np.where(fresh, 0.0, (sample - self.previous) / dt)
        smoothed = self.derivative + _alpha(self.d_cutoff, dt) * (raw_derivative - self.derivative)
        derivative = np.where(fresh, 0.0, smoothed)
        alpha = _alpha(self.min_cutoff + self.beta * np.abs(derivative), dt)
        filtered = np.where(fresh, sample, self.previous + alpha * (sample - self.previous))
        missing = ~np.isfinite(sample)
        self.previous = np.where(missing, np.nan, filtered)
        self.derivative = np.where(missing, 0.0, derivative)
        return np.where(missing, np.nan, filtered)


def one_euro(
    signal: np.ndarray,
    fps: float,
    min_cutoff: float | np.ndarray,
    beta: float | np.ndarray,
    d_cutoff: float | np.ndarray = 1.0,
) -> np.ndarray:
    """Causal One-Euro filter along axis 0 (time), vectorised over every other axis (channels).

    signal: (F, ...) float, samples 1/fps apart; min_cutoff, beta, d_cutoff: scalars or arrays broadcasting
    to one sample (signal.shape[1:]), so every channel can have its own setting. NaN samples pass through
    as NaN and reset that channel: the next valid sample starts the filter afresh (no ramp across a gap).
    Returns float64 (F, ...).
    """
    x = np.asarray(signal, dtype=np.float64)
    dt = 1.0 / float(fps)
    stream = OneEuroStream(x.shape[1:], min_cutoff, beta, d_cutoff)
    out = np.full_like(x, np.nan)
    for index in range(x.shape[0]):
        out[index] = stream.step(x[index], dt)
    return out


def one_euro_zero_lag(
    signal: np.ndarray,
    fps: float,
    min_cutoff: float | np.ndarray,
    beta: float | np.ndarray,
    d_cutoff: float | np.ndarray = 1.0,
) -> np.ndarray:
    """Offline, zero-lag One-Euro (F, ...) -> (F, ...): the forward pass filtered again backwards in time.

    The backward pass lags by about as much as the forward pass leads it back, so the result has no lag
    (like filtfilt for linear filters), and the signal is smoothed twice. Measured on CMU 01_01 at 30 fps
    with 20 mm noise per keypoint, "medium" settings: mean error 31.9 mm raw, 30.0 mm causal One-Euro
    (0.8 frame lag), 15.9 mm forward-backward (no lag); mean |acceleration| 78.8 -> 22.5 -> 9.8
    mm/frame^2. The mean of a forward and a reversed pass did worse (16.4 mm, 21.4 mm/frame^2).
    """
    forward = one_euro(signal, fps, min_cutoff, beta, d_cutoff)
    return one_euro(forward[::-1], fps, min_cutoff, beta, d_cutoff)[::-1]


def smooth_keypoints(
    keypoints: np.ndarray, fps: float, strength: str = "medium", method: str = "one_euro"
) -> np.ndarray:
    """Smooth MHR70 keypoint tracks with per-bone-group One-Euro settings.

    keypoints: (F, 70, 3) metres (any fixed axes); fps: samples per second. strength "off" returns a copy.
    method "one_euro" (causal, live-friendly) or "zero_lag" (offline forward-backward). Returns (F, 70, 3)
    float64 with NaN wherever the input was NaN.
    """
    if method not in SMOOTHING_METHODS:
        raise FilterError(f"smoothing method {method!r} is not one of {SMOOTHING_METHODS}")
    if strength == "off":
        return np.array(keypoints, dtype=np.float64, copy=True)
    run = one_euro if method == "one_euro" else one_euro_zero_lag
    return run(keypoints, fps, *keypoint_params(strength))


def keypoint_params(strength: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """min_cutoff, beta, d_cutoff per MHR70 keypoint (each (70, 1), broadcasting over x, y, z) for a strength."""
    params = group_params(strength)
    return tuple(
        np.array([getattr(params[group], name) for group in KEYPOINT_GROUPS])[:, None]
        for name in ("min_cutoff", "beta", "d_cutoff")
    )


def keypoint_stream(strength: str) -> OneEuroStream:
    """A live (causal) One-Euro filter for (70, 3) keypoint samples with the per-bone-group settings."""
    return OneEuroStream((len(KEYPOINT_GROUPS), 3), *keypoint_params(strength))


# How much harder depth is smoothed than the image position: the resting cutoff is divided by these.
DEPTH_SCALE = 2.0
ROOT_DEPTH_SCALE = 4.0
# Depth's speed estimate is mostly noise: its speed response (beta) is divided by this.
DEPTH_BETA_SCALE = 3.0
# Outlier rejection before smoothing: a sample further than this many median absolute deviations from the
# median of its +-HAMPEL_SECONDS window is replaced by that median.
HAMPEL_SECONDS = 0.1
HAMPEL_MULTIPLE = 4.0


def reject_outliers(signal: np.ndarray, fps: float, seconds: float = HAMPEL_SECONDS, multiple: float = HAMPEL_MULTIPLE):
    """Hampel filter along axis 0 around the local trend: (F, ...) -> (F, ...) float64.

    In each +-seconds window the trend is the robust slope (median of the symmetric differences) through the
    sample; a sample further than `multiple` scaled median absolute deviations from the window's detrended
    median is replaced by that median, so a spike on a fast-moving keypoint is caught as well as on a still
    one. NaN stays NaN (and is ignored)."""
    x = np.asarray(signal, dtype=np.float64)
    # 2 to 6 samples each side: enough for the 1-2 frame spikes the clean stage leaves, cheap at 120 fps.
    radius = int(np.clip(round(seconds * fps), 2, 6))
    if x.shape[0] < 2 * radius + 1:
        return x.copy()
    count, offsets = x.shape[0], range(-radius, radius + 1)
    pad = np.full((radius,) + x.shape[1:], np.nan)
    padded = np.concatenate([pad, x, pad])
    # The window as 2 * radius + 1 shifted views (sample i + offset at row i), not a (F, ..., w) array: the medians
    # then run on whole (F, ...) arrays at a time. Missing samples are +inf (they sort last), counted apart.
    present = np.cumsum(np.concatenate([np.zeros((1,) + x.shape[1:], np.int32), np.isfinite(padded)]), axis=0)
    known = present[2 * radius + 1:] - present[: count]  # finite samples per window
    missing_last = np.where(np.isnan(padded), np.inf, padded)
    slopes = [(padded[2 * radius - k: 2 * radius - k + count] - padded[k: k + count]) / (2.0 * (radius - k))
              for k in range(radius)]  # fmt: skip
    slope = np.nan_to_num(window_median(slopes), nan=0.0)
    detrended = [missing_last[radius + k: radius + k + count] - slope * k for k in offsets]
    median = _sorted_median(detrended, known)
    # `detrended` is now sorted per element: the same values, so the same deviations from the median.
    spread = 1.4826 * _sorted_median([np.abs(values - median) for values in detrended], known)
    outlier = np.abs(x - median) > multiple * np.maximum(spread, 1e-6)
    return np.where(outlier & np.isfinite(median), median, x)


def window_median(samples: list[np.ndarray]) -> np.ndarray:
    """Element-wise median of equally shaped arrays ignoring NaN (NaN where all are NaN): the median of each
    element's finite samples, the mean of the two middle ones for an even count. Much faster than np.nanmedian
    or sorting a (..., n) window array (see _sorted_median)."""
    known = sum(np.isfinite(values).astype(np.int32) for values in samples)
    return _sorted_median([np.where(np.isnan(values), np.inf, values) for values in samples], known)


def _sorted_median(ordered: list[np.ndarray], known: np.ndarray) -> np.ndarray:
    """The median of each element's first `known` samples in sorted order, NaN where known is 0. ordered: arrays
    (the caller's own: sorted in place) with the missing samples as +inf; known: how many are not missing.

    A sorting network (odd-even transposition) of element-wise minimum and maximum sorts every element's samples
    at once; missing samples end last, so the median sits at the middle of the known count: the middle of the
    whole list almost everywhere, picked element by element only where some samples are missing."""
    size = len(ordered)
    spare = np.empty_like(ordered[0])
    for round_ in range(size):
        for low in range(round_ % 2, size - 1, 2):
            a, b = ordered[low], ordered[low + 1]
            np.minimum(a, b, out=spare)
            np.maximum(a, b, out=b)
            ordered[low], spare = spare, a
    out = 0.5 * (ordered[(size - 1) // 2] + ordered[size // 2])
    partial = np.flatnonzero((known > 0) & (known < size))
    if len(partial):
        stacked = np.stack([values.reshape(-1)[partial] for values in ordered])  # (size, partial), ascending
        have = known.reshape(-1)[partial]
        columns = np.arange(len(partial))
        flat = out.reshape(-1).copy()
        flat[partial] = 0.5 * (stacked[(have - 1) // 2, columns] + stacked[have // 2, columns])
        out = flat.reshape(out.shape)
    return np.where(known > 0, out, np.nan)


def smooth_camera_keypoints(
    joints_cam: np.ndarray, fps: float, strength: str = "medium", method: str = "zero_lag"
) -> np.ndarray:
    """Smooth camera-space keypoints (F, 70, 3) (metres, OpenCV axes, NaN where absent) as described in the
    module docstring. Returns (F, 70, 3) float64, NaN where the input was NaN; "off" returns a copy."""
    joints = np.array(joints_cam, dtype=np.float64, copy=True)
    if method not in SMOOTHING_METHODS:
        raise FilterError(f"smoothing method {method!r} is not one of {SMOOTHING_METHODS}")
    if strength == "off":
        return joints
    if strength not in _STRENGTH_SCALE:
        raise FilterError(f"smoothing strength {strength!r} is not one of {SMOOTHING_LEVELS}")
    ray, relative, root = _ray_and_depth(joints)
    count = len(joints)
    # Every channel in one array, so the filters run once: ray x and y (70 each), relative depth (70), root.
    channels = reject_outliers(np.concatenate([ray.reshape(count, -1), relative, root[:, None]], axis=1), fps)
    if method == "zero_lag":
        channels = _offline_channels(channels, fps, strength)
    else:
        channels = _one_euro_channels(channels, fps, strength, root)
    return _joints_from_channels(channels, joints)


# The offline ("zero_lag") smoothing: a Whittaker smoother per channel kind, its width the larger of a number of frames
# and a time, written as the sigma of the Gaussian that halves the same frequency. Jitter is noise from frame to frame:
# removing a given share of it takes a given number of frames at any rate (1.7 frames of image position, 2.1 of depth,
# at "medium"); the time keeps a fast take (120 fps) from being smoothed less per second than a 60 fps one. The
# smoother's response stays flat longer and then falls more steeply than a Gaussian's (1 / (1 + lambda w^4) against
# exp(-sigma^2 w^2 / 2)): it keeps more of the motion for the same removal of frame-to-frame noise. Measured on the
# real-network take (tools/solve_figures.py), 60 / 30 fps: the rig follows the input 38.1 / 45.5 mm with jitter down
# 89.6% / 86.3%, against 38.5 / 48.2 mm and 89.5% / 85.9% for the Gaussian of 1.5 / 2 frames it replaces (and 48.4
# / 53.0 mm, 91.8% / 85.7% for the One-Euro forward-backward pass before that).
RAY_SIGMA = (1.7, 0.028)  # (frames, seconds): image position
DEPTH_SIGMA = (2.1, 0.035)  # depth along the ray, relative to the hips and of the hips themselves


def _sigma_frames(sigma: tuple[float, float], fps: float, strength: str) -> float:
    frames, seconds = sigma
    return max(frames, seconds * fps) / _STRENGTH_SCALE[strength]


def _offline_channels(channels: np.ndarray, fps: float, strength: str) -> np.ndarray:
    image = 2 * NUM_KEYPOINTS
    lam = np.empty(channels.shape[1])
    lam[:image] = whittaker_lambda(_sigma_frames(RAY_SIGMA, fps, strength))
    lam[image:] = whittaker_lambda(_sigma_frames(DEPTH_SIGMA, fps, strength))
    return whittaker_smooth(channels, lam)


def whittaker_lambda(sigma_frames: float) -> float:
    """The Whittaker smoother's lambda that halves the amplitude at the frequency a Gaussian of sigma_frames halves
    it: the Gaussian passes exp(-sigma^2 w^2 / 2), the smoother 1 / (1 + lambda w^4) (w radians per frame, small)."""
    return float(sigma_frames) ** 4 / (2.0 * math.log(2.0)) ** 2


def whittaker_smooth(signal: np.ndarray, lam) -> np.ndarray:
    """Zero-lag Whittaker smoothing along axis 0: per channel the z minimising sum over known samples (z - y)^2 +
    lam * sum (second difference of z)^2, a discrete smoothing spline. (F, ...) -> (F, ...) float64, NaN stays NaN.

    lam: scalar or one per channel (the trailing axes flattened). Missing samples carry no weight (the curve passes
    smoothly through gaps) and the ends need no padding: a spline keeps its slope there, so a clip's first and last
    frames are neither pulled towards their neighbours' mean nor lagged. The system (W + lam D'D) z = W y is
    pentadiagonal: it is factored as L D L' once per distinct (known frames, lam) of the channels (plain floats,
    one pass over the frames), then solved for every channel at once, one frame per numpy step.
    """
    x = np.asarray(signal, dtype=np.float64)
    count = x.shape[0]
    if count < 3:
        return x.copy()
    flat = x.reshape(count, -1)
    width = flat.shape[1]
    known = np.isfinite(flat)
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64).reshape(-1), (width,))
    # Factors per channel: the diagonal d and L's two sub-diagonals e, f, after two leading padding rows (e and f zero
    # there, d one) so that the recursions below need no special first frames (row i + 2 holds frame i).
    d = np.ones((count + 2, width))
    e = np.zeros((count + 2, width))
    f = np.zeros((count + 2, width))
    groups: dict[tuple[bytes, float], list[int]] = {}
    solvable = known.sum(axis=0) >= 2  # a channel with fewer known samples has no curve to fit: kept as it is
    for channel in np.flatnonzero(solvable).tolist():
        groups.setdefault((known[:, channel].tobytes(), float(lam[channel])), []).append(channel)
    for (_, weight_lam), channels in groups.items():
        factors = _whittaker_factors(known[:, channels[0]].tolist(), weight_lam)
        d[2:, channels], e[2:, channels], f[2:, channels] = (np.array(column)[:, None] for column in factors)
    u = np.zeros((count + 2, width))
    rhs = np.where(known, flat, 0.0)
    for row in range(2, count + 2):  # L u = W y
        u[row] = rhs[row - 2] - e[row - 1] * u[row - 1] - f[row - 2] * u[row - 2]
    v = u / d
    z = np.zeros((count + 2, width))  # D L' z = u, with two trailing rows of zeros
    for row in range(count - 1, -1, -1):
        z[row] = v[row + 2] - e[row + 2] * z[row + 1] - f[row + 2] * z[row + 2]
    return np.where(known, np.where(solvable, z[:count], flat), np.nan).reshape(x.shape)


def _whittaker_factors(known: list[bool], lam: float) -> tuple[list[float], list[float], list[float]]:
    """L D L' of W + lam D'D (D the second difference, W the known frames) for one pattern of known frames:
    (d, e, f) per frame, e and f the sub-diagonals of L below each frame's column. Two known frames make it
    positive definite (they pin the straight lines D'D lets through)."""
    count = len(known)
    # D'D: diagonal (1, 5, 6, ..., 6, 5, 1), first off-diagonal (-2, -4, ..., -4, -2), second off-diagonal 1.
    d, e, f = [0.0] * count, [0.0] * count, [0.0] * count
    d_prev2 = d_prev = 1.0
    e_prev = f_prev = f_prev2 = g_prev = 0.0  # g = e * d of the previous frame
    for i in range(count):
        square = (1.0 if i < count - 2 else 0.0) + (4.0 if 0 < i < count - 1 else 0.0) + (1.0 if i >= 2 else 0.0)
        d_i = (1.0 if known[i] else 0.0) + lam * square - e_prev * g_prev - f_prev2 * f_prev2 * d_prev2
        if i + 1 < count:
            first = -2.0 * ((1.0 if i < count - 2 else 0.0) + (1.0 if i >= 1 else 0.0))
            g_i = lam * first - f_prev * g_prev
            e_i = g_i / d_i
        else:
            g_i = e_i = 0.0
        f_i = lam / d_i if i + 2 < count else 0.0
        d[i], e[i], f[i] = d_i, e_i, f_i
        d_prev2, d_prev, e_prev, g_prev, f_prev2, f_prev = d_prev, d_i, e_i, g_i, f_prev, f_i
    return d, e, f


def _ray_and_depth(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(F, 70, 3) camera space -> ray (F, 70, 2) (x/z, y/z), depth relative to the hips (F, 70), hips' depth (F,)
    (interpolated over frames without both hips)."""
    depth = joints[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        ray = joints[..., :2] / depth[..., None]
    ray = np.where(depth[..., None] > 1e-6, ray, np.nan)
    root = _fill_linear(depth[:, list(_HIP_KEYPOINTS)].mean(axis=1))  # NaN unless both hips are known
    return ray, depth - root[:, None], root


def _joints_from_channels(channels: np.ndarray, joints: np.ndarray) -> np.ndarray:
    count = len(joints)
    ray = channels[:, : 2 * NUM_KEYPOINTS].reshape(count, NUM_KEYPOINTS, 2)
    depth = channels[:, -1][:, None] + channels[:, 2 * NUM_KEYPOINTS : 3 * NUM_KEYPOINTS]
    out = np.concatenate([ray * depth[..., None], depth[..., None]], axis=-1)
    return np.where(np.isfinite(joints), out, np.nan)


def _one_euro_channels(channels: np.ndarray, fps: float, strength: str, root: np.ndarray) -> np.ndarray:
    """The causal One-Euro over the channels of smooth_camera_keypoints ("one_euro": what a live filter sees)."""
    params = group_params(strength)
    min_cutoff = np.array([params[group].min_cutoff for group in KEYPOINT_GROUPS])
    beta = np.array([params[group].beta for group in KEYPOINT_GROUPS])
    d_cutoff = np.array([params[group].d_cutoff for group in KEYPOINT_GROUPS])
    # Image position: the group settings (beta is per metre of speed: across the image that is per metre /
    # distance of ray speed); along the ray: slower, with a damped speed response; the root slowest.
    distance = float(np.nanmedian(root)) if np.isfinite(root).any() else 1.0
    root_params = params["root"]
    cutoffs = np.concatenate([np.repeat(min_cutoff, 2), min_cutoff / DEPTH_SCALE,
                              [root_params.min_cutoff / ROOT_DEPTH_SCALE]])  # fmt: skip
    betas = np.concatenate([np.repeat(beta, 2) * max(distance, 0.1), beta / DEPTH_BETA_SCALE,
                            [root_params.beta / DEPTH_BETA_SCALE]])  # fmt: skip
    d_cutoffs = np.concatenate([np.repeat(d_cutoff, 2), d_cutoff, [root_params.d_cutoff]])
    return one_euro(channels, fps, cutoffs, betas, d_cutoffs)


def _fill_linear(values: np.ndarray) -> np.ndarray:
    """(F,) with NaN runs between known samples interpolated and the ends held (for a reference track)."""
    known = np.flatnonzero(np.isfinite(values))
    if len(known) == 0:
        return values.copy()
    return np.interp(np.arange(len(values)), known, values[known])


def gaussian_smooth(signal: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Zero-lag Gaussian smoothing along axis 0 with NaN-aware normalised weights (edges use only the
    samples that exist, so they are not pulled towards zero). (F, ...) -> (F, ...) float64; NaN stays NaN."""
    x = np.asarray(signal, dtype=np.float64)
    if sigma_frames <= 0:
        return x.copy()
    radius = max(1, int(math.ceil(3.0 * sigma_frames)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    valid = np.isfinite(x)
    values = np.where(valid, x, 0.0)
    total = np.zeros_like(values)
    weight = np.zeros_like(values)
    count = x.shape[0]
    for shift, k in zip(range(-radius, radius + 1), kernel):
        if abs(shift) >= count:  # a clip shorter than the kernel: these taps fall outside it
            continue
        source = slice(max(0, shift), count + min(0, shift))
        target = slice(max(0, -shift), count - max(0, shift))
        total[target] += k * values[source]
        weight[target] += k * valid[source]
    out = total / np.where(weight > 0, weight, 1.0)
    return np.where(valid, out, np.nan)
