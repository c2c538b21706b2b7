"""Synthetic medical-looking datasets (SPEC D4): fundus photographs, chest X-rays, natural images.

Per-image generators draw with numpy from a `np.random.Generator`:
  - `fundus_image(rng, *, size, grade, eye)` -> uint8 [size, size, 3]: an orange retina disc
    with vignetting, vessel arcades, optic disc and macula; diabetic-retinopathy grade 0-4
    (ICDR) drawn as growing numbers of micro-aneurysms, haemorrhages, hard exudates, cotton-wool
    spots and (grade 4) new vessels, among lesion-like distractors seen at every grade.
  - `cxr_image(rng, *, size, findings, view)` -> uint8 [size, size]: a grayscale chest with
    lungs, ribs, spine, heart and diaphragm; the 5 CheXpert competition findings drawn as their
    signs with a severity in [0, 1] (cardiomegaly: wide heart; pleural effusion: basal
    opacity with a meniscus; edema: perihilar haze; consolidation: dense patch; atelectasis:
    plate-like band with volume loss).
  - `natural_image(rng, *, size, cls)` -> uint8 [size, size, 3]: one of NATURAL_CLASSES
    (shape x texture) in random colours, position, scale and rotation on a textured background.

Samplers make example `index` of a `seed` always the same image, whatever the worker count or
the number of examples asked for, and group images by patient so splits can be patient-level:
  - `sample_fundus(index, *, seed, size)` -> FundusSample: patient `index // 2`, eye
    "left"/"right" by parity; both eyes share a patient-level grade (the other eye may differ by 1).
  - `sample_cxr(index, *, seed, size)` -> CxrSample: patient `index // 3`, studies 1-3; raw
    CheXpert-style values (1.0, 0.0, -1.0 or None = blank) for all 14 CheXpert observations.
  - `sample_natural(index, *, seed, size)` -> NaturalSample (no patients: one "patient" per image).

`SYNTHETIC_KINDS` holds one `SyntheticKind` per kind (its sampler, labels, default tasks and
description). `write_synthetic_dataset` renders N examples of a kind (a spawn-based process
pool when workers > 1), splits them by patient with the converters' `splits.split_by_patient`
and writes PNG shards plus dataset_info.json through `writer`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from transfusion_tf.data import atomic
from transfusion_tf.data.chexpert_labels import COMPETITION_TASKS as CHEXPERT_COMPETITION_TASKS
from transfusion_tf.data.chexpert_labels import OBSERVATIONS as CHEXPERT_OBSERVATIONS
from transfusion_tf.data.encode import encode_png
from transfusion_tf.data.splits import split_by_patient
from transfusion_tf.registry import Registry

KINDS = ("fundus", "cxr", "natural")
_KIND_CODE = {"fundus": 1, "cxr": 2, "natural": 3}

# Grade prevalence (ICDR 0-4) of synthetic patients; 33% referable (grade >= 2), less skewed
# than EyePACS (~20%) so small synthetic runs see enough positives.
FUNDUS_GRADE_PROBS = (0.55, 0.12, 0.18, 0.08, 0.07)
FUNDUS_TASKS = (
    "referable_dr",
    "dr_grade_0",
    "dr_grade_1",
    "dr_grade_2",
    "dr_grade_3",
    "dr_grade_4",
)

_FINDING_PREVALENCE = {
    "Atelectasis": 0.3,
    "Cardiomegaly": 0.22,
    "Consolidation": 0.18,
    "Edema": 0.28,
    "Pleural Effusion": 0.33,
}
UNCERTAIN_POLICIES = ("ignore", "ones", "zeros")

NATURAL_SHAPES = ("circle", "square", "triangle", "cross")
NATURAL_TEXTURES = ("solid", "stripes", "checker")
NATURAL_CLASSES = tuple(f"{s}_{t}" for s in NATURAL_SHAPES for t in NATURAL_TEXTURES)


# ----------------------------------------------------------------------------- drawing helpers
@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates yy, xx in [-1, 1], float32 [size, size]."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    return yy, xx


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise [size, size] ~ N(0, 1) at `cells` x `cells` control points."""
    coarse = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    pos = np.linspace(0.0, cells, size, dtype=np.float32)
    i0 = np.minimum(pos.astype(np.int32), cells - 1)
    f = pos - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def _discs(
    canvas: np.ndarray,
    cy: np.ndarray,
    cx: np.ndarray,
    radius: np.ndarray,
    color: Sequence[float] | float,
    alpha: float,
) -> None:
    """Blends soft discs (pixel units, 1 px soft edge) of one `color` into `canvas` [H, W, C].

    All discs are rasterised at once into one coverage map (maximum where they overlap), which
    is then blended in a single step: vessels are hundreds of overlapping discs.
    """
    cy, cx, radius = np.broadcast_arrays(
        np.atleast_1d(np.asarray(cy, np.float32)),
        np.atleast_1d(np.asarray(cx, np.float32)),
        np.atleast_1d(np.asarray(radius, np.float32)),
    )
    if cy.size == 0:
        return
    height, width = canvas.shape[:2]
    reach = int(np.ceil(float(radius.max()) + 1.5))
    offsets = np.arange(-reach, reach + 1)
    py = np.floor(cy).astype(np.int64)[:, None, None] + offsets[None, :, None]
    px = np.floor(cx).astype(np.int64)[:, None, None] + offsets[None, None, :]
    dist = np.sqrt((py + 0.5 - cy[:, None, None]) ** 2 + (px + 0.5 - cx[:, None, None]) ** 2)
    cover = np.clip(radius[:, None, None] + 0.5 - dist, 0.0, 1.0)
    valid = (py >= 0) & (py < height) & (px >= 0) & (px < width) & (cover > 0)
    flat = np.broadcast_to(py * width + px, cover.shape)[valid]
    coverage = np.zeros(height * width, np.float32)
    np.maximum.at(coverage, flat, cover[valid].astype(np.float32))
    a = (coverage.reshape(height, width) * alpha)[:, :, None]
    canvas *= 1.0 - a
    canvas += a * np.asarray(color, np.float32)


def _to_px(v: float, size: int) -> float:
    """Unit coordinate in [-1, 1] to pixel coordinate."""
    return (v + 1.0) * 0.5 * size


def _walk(
    rng: np.random.Generator,
    *,
    start: tuple[float, float],
    angle: float,
    length: float,
    curvature: float,
    wiggle: float,
    step: float,
) -> np.ndarray:
    """A smooth random-walk polyline in unit coordinates, [n, 2] (y, x)."""
    n = max(int(length / step), 2)
    turns = curvature + wiggle * rng.standard_normal(n).astype(np.float32)
    angles = angle + np.cumsum(turns) * step
    dy, dx = np.sin(angles) * step, np.cos(angles) * step
    ys = start[0] + np.cumsum(dy)
    xs = start[1] + np.cumsum(dx)
    return np.stack([ys, xs], axis=1)


def _draw_path(
    canvas: np.ndarray,
    path: np.ndarray,
    *,
    width_px: Sequence[float] | float,
    color: Sequence[float],
    alpha: float,
) -> None:
    """Draws a polyline [n, 2] (unit coordinates) as overlapping discs of radius `width_px`."""
    size = canvas.shape[0]
    widths = np.broadcast_to(np.asarray(width_px, np.float32), (len(path),))
    keep = (np.abs(path[:, 0]) < 1.05) & (np.abs(path[:, 1]) < 1.05)
    _discs(
        canvas,
        _to_px(path[keep, 0], size),
        _to_px(path[keep, 1], size),
        np.maximum(widths[keep], 0.35),
        color,
        alpha,
    )


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- fundus
@dataclasses.dataclass(frozen=True)
class FundusStyle:
    """How hard the fundus task is: lesion radius and opacity multipliers, and how many
    lesion-like distractors (drusen-like specks, pigment dots) every grade shows, as a
    multiplier of their default counts. `min_visibility` < 1 draws each image's lesion
    opacity factor uniformly from [min_visibility, 1], so some images show their lesions
    faintly or (near 0) not at all, as subtle cases do: the task's AUC then has a ceiling
    below 1 that no model passes. The default draws the images of earlier versions."""

    lesion_scale: float = 1.0
    lesion_contrast: float = 1.0
    distractors: float = 1.0
    min_visibility: float = 1.0

    def __post_init__(self) -> None:
        for name in ("lesion_scale", "lesion_contrast", "distractors"):
            if not getattr(self, name) > 0:
                raise ValueError(f"FundusStyle.{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.min_visibility <= 1:
            raise ValueError(
                f"FundusStyle.min_visibility must be in [0, 1], got {self.min_visibility}"
            )


DEFAULT_FUNDUS_STYLE = FundusStyle()


def fundus_image(
    rng: np.random.Generator,
    *,
    size: int,
    grade: int,
    eye: str = "right",
    style: FundusStyle = DEFAULT_FUNDUS_STYLE,
) -> np.ndarray:
    """A synthetic colour fundus photograph of ICDR `grade` (0-4), uint8 [size, size, 3].

    Drawn in steps from one generator, in this order: the background, the anatomy, the
    exposure and sensor noise, then the lesions (so with the same generator two grades differ
    only where lesions are drawn).
    """
    if grade not in range(5):
        raise ValueError(f"DR grade must be 0..4, got {grade}")
    if eye not in ("left", "right"):
        raise ValueError(f"eye must be 'left' or 'right', got {eye!r}")
    img = _fundus_background(rng, size)
    disc, macula = _fundus_anatomy(rng, img, eye=eye)
    gain = rng.uniform(0.75, 1.15)
    sensor_noise = rng.normal(0.0, 0.015, img.shape).astype(np.float32)
    _fundus_lesions(rng, img, grade=grade, style=style, disc=disc, macula=macula)
    yy, xx = _grid(size)
    px = size / 2.0
    img = img * gain + sensor_noise
    fov = np.clip((0.93 - np.sqrt(yy**2 + xx**2)) * px, 0.0, 1.0)  # black outside the view
    img = img * fov[:, :, None] + 0.01
    return _to_uint8(img)


def _fundus_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """The orange retina with texture and vignetting, float32 [size, size, 3]."""
    yy, xx = _grid(size)
    r2 = yy**2 + xx**2
    base = np.array([0.82, 0.36, 0.13], np.float32) * rng.uniform(0.8, 1.1, 3).astype(np.float32)
    texture = 1.0 + 0.06 * _smooth_noise(rng, size, 6)
    vignette = np.clip(1.0 - 0.45 * r2 * rng.uniform(0.7, 1.3), 0.15, 1.0)
    return base[None, None, :] * (texture * vignette)[:, :, None]


def _fundus_anatomy(
    rng: np.random.Generator, img: np.ndarray, *, eye: str
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Draws the macula, vessel arcades and optic disc into `img`; returns (disc, macula).

    Both are (y, x) centres in unit coordinates; the disc is on the nasal side of `eye`.
    """
    size = img.shape[0]
    yy, xx = _grid(size)
    side = 1.0 if eye == "right" else -1.0
    disc_y = rng.uniform(-0.12, 0.12)
    disc_x = side * rng.uniform(0.38, 0.5)
    macula = (disc_y + rng.uniform(-0.05, 0.05), disc_x - side * rng.uniform(0.45, 0.55))
    mac = np.exp(-((yy - macula[0]) ** 2 + (xx - macula[1]) ** 2) / (2 * 0.09**2))
    img *= (1.0 - 0.35 * mac)[:, :, None]
    px = size / 2.0
    vessel_color = np.array([0.5, 0.08, 0.05], np.float32)
    for up in (-1.0, 1.0):
        for spread in (0.7, 1.2):
            path = _walk(
                rng,
                start=(disc_y, disc_x),
                angle=np.pi / 2 * (1 + side) + up * rng.uniform(0.4, 0.6) * spread,
                length=rng.uniform(1.0, 1.5),
                curvature=up * rng.uniform(0.9, 1.5),
                wiggle=1.5,
                step=0.6 / px,
            )
            width = np.linspace(0.012, 0.004, len(path)) * px * spread**-0.5
            _draw_path(img, path, width_px=width, color=vessel_color, alpha=0.55)
    _discs(img, _to_px(disc_y, size), _to_px(disc_x, size), 0.11 * px, (1.0, 0.86, 0.62), 0.9)
    _discs(img, _to_px(disc_y, size), _to_px(disc_x, size), 0.05 * px, (1.0, 0.95, 0.8), 0.6)
    return (disc_y, disc_x), macula


def _spots(
    rng: np.random.Generator,
    img: np.ndarray,
    *,
    count: int,
    radius: tuple[float, float],
    color: Sequence[float],
    alpha: float,
    style: FundusStyle,
    near: tuple[float, float] | None = None,
    spread: float = 0.5,
) -> None:
    """Draws `count` lesion-like discs; `alpha` is their opacity before the style's contrast.

    Placed uniformly over the central retina, or normally around `near` (unit coordinates).
    """
    size = img.shape[0]
    px = size / 2.0
    if near is None:
        rho, phi = 0.75 * np.sqrt(rng.uniform(size=count)), rng.uniform(0, 2 * np.pi, count)
        y, x = rho * np.sin(phi), rho * np.cos(phi)
    else:
        y = near[0] + spread * rng.standard_normal(count)
        x = near[1] + spread * rng.standard_normal(count)
    rad = np.maximum(rng.uniform(*radius, size=count) * px * style.lesion_scale, 0.5)
    alpha = min(1.0, alpha * style.lesion_contrast)
    _discs(img, _to_px(y, size), _to_px(x, size), rad, color, alpha)


def _lesion_counts(rng: np.random.Generator, grade: int) -> tuple[int, ...]:
    """(micro-aneurysms, haemorrhages, exudates, cotton-wool spots, new vessels) of `grade`.

    The counts of every grade are drawn, whichever is asked for, so the generator moves on
    the same for all grades.
    """
    lesions = {
        0: (0, 0, 0, 0, 0),
        1: (rng.integers(2, 5), 0, 0, 0, 0),
        2: (rng.integers(4, 10), rng.integers(1, 4), rng.integers(1, 5), 0, 0),
        3: (rng.integers(8, 16), rng.integers(4, 9), rng.integers(3, 8), rng.integers(1, 3), 0),
        4: (rng.integers(10, 20), rng.integers(6, 12), rng.integers(4, 10), rng.integers(1, 4), 2),
    }[grade]
    return tuple(int(v) for v in lesions)


def _fundus_lesions(
    rng: np.random.Generator,
    img: np.ndarray,
    *,
    grade: int,
    style: FundusStyle,
    disc: tuple[float, float],
    macula: tuple[float, float],
) -> None:
    """Draws the distractors every grade shows, then the lesions of `grade`, into `img`."""
    spots = functools.partial(_spots, rng, img, style=style)
    # Distractors at every grade: pale drusen-like specks and dark pigment dots.
    many = style.distractors
    count = int(rng.integers(0, max(1, round(4 * many))))
    spots(count=count, radius=(0.008, 0.016), color=(0.95, 0.8, 0.5), alpha=0.45)
    count = int(rng.integers(0, max(1, round(3 * many))))
    spots(count=count, radius=(0.006, 0.012), color=(0.35, 0.12, 0.05), alpha=0.5)
    # This image's lesion visibility (drawn only for a style that asks for it, so the default
    # style's images stay those of earlier versions).
    seen = 1.0 if style.min_visibility >= 1 else rng.uniform(style.min_visibility, 1.0)
    n_ma, n_haem, n_exud, n_cws, n_nv = _lesion_counts(rng, grade)
    spots(count=n_ma, radius=(0.012, 0.02), color=(0.45, 0.04, 0.03), alpha=0.9 * seen)
    spots(count=n_haem, radius=(0.03, 0.06), color=(0.42, 0.05, 0.03), alpha=0.8 * seen)
    spots(
        count=n_exud,
        radius=(0.015, 0.03),
        color=(0.98, 0.9, 0.45),
        alpha=0.85 * seen,
        near=macula,
        spread=0.22,
    )
    spots(count=n_cws, radius=(0.04, 0.06), color=(0.95, 0.9, 0.8), alpha=0.5 * seen)
    px = img.shape[0] / 2.0
    for _ in range(n_nv):
        path = _walk(
            rng,
            start=disc,
            angle=rng.uniform(0, 2 * np.pi),
            length=0.35,
            curvature=0.0,
            wiggle=25.0,
            step=0.5 / px,
        )
        _draw_path(img, path, width_px=0.004 * px, color=(0.6, 0.1, 0.08), alpha=0.8 * seen)


@dataclasses.dataclass(frozen=True)
class FundusSample:
    """One synthetic fundus photograph: image uint8 [H, W, 3], ICDR grade, patient and eye."""

    image: np.ndarray
    grade: int
    patient: int
    eye: str

    @property
    def patient_id(self) -> str:
        return f"{self.patient}"


def sample_fundus(
    index: int, *, seed: int = 0, size: int = 64, style: FundusStyle = DEFAULT_FUNDUS_STYLE
) -> FundusSample:
    """Example `index` of the synthetic fundus set of `seed` (patient index // 2, both eyes)."""
    patient, eye_index = divmod(index, 2)
    prng = np.random.default_rng([seed, _KIND_CODE["fundus"], patient])
    grade = int(prng.choice(5, p=FUNDUS_GRADE_PROBS))
    shifts = prng.choice([-1, 0, 0, 0, 0, 1], size=2)  # the eyes of a patient differ a little
    eye_grade = int(np.clip(grade + shifts[eye_index], 0, 4))
    eye = ("left", "right")[eye_index]
    rng = np.random.default_rng([seed, _KIND_CODE["fundus"], patient, eye_index, 1])
    return FundusSample(
        fundus_image(rng, size=size, grade=eye_grade, eye=eye, style=style),
        eye_grade,
        patient,
        eye,
    )


def fundus_labels(grade: int, tasks: Sequence[str]) -> list[float]:
    """Label vector for `tasks` (FUNDUS_TASKS) of a fundus image of `grade`."""
    out = []
    for task in tasks:
        if task == "referable_dr":
            out.append(float(grade >= 2))
        elif task.startswith("dr_grade_") and task in FUNDUS_TASKS:
            out.append(float(grade == int(task[-1])))
        else:
            raise ValueError(f"unknown fundus task {task!r}; choose from {list(FUNDUS_TASKS)}")
    return out


# ----------------------------------------------------------------------------- chest X-ray
def cxr_image(
    rng: np.random.Generator,
    *,
    size: int,
    findings: Mapping[str, float],
    view: str = "frontal",
) -> np.ndarray:
    """A synthetic chest radiograph, uint8 [size, size].

    `findings` maps CheXpert competition findings to a severity in [0, 1] (0 or missing =
    absent). `view` is "frontal" (PA/AP) or "lateral" (a coarser side silhouette).
    """
    unknown = set(findings) - set(CHEXPERT_COMPETITION_TASKS)
    if unknown:
        raise ValueError(f"unknown findings {sorted(unknown)}; known: {CHEXPERT_COMPETITION_TASKS}")
    if view not in ("frontal", "lateral"):
        raise ValueError(f"view must be 'frontal' or 'lateral', got {view!r}")
    sev = {k: float(np.clip(findings.get(k, 0.0), 0.0, 1.0)) for k in CHEXPERT_COMPETITION_TASKS}
    yy, xx = _grid(size)
    noise = _smooth_noise(rng, size, 8)
    img = np.full((size, size), 0.06, np.float32)
    thorax = ((yy - 0.05) / 0.98) ** 2 + (xx / rng.uniform(0.8, 0.9)) ** 2 < 1.0
    img = np.where(thorax, 0.5 + 0.03 * noise, img)
    if view == "lateral":
        img = _cxr_lateral(img, sev)
    else:
        img, lung, at_side = _cxr_frontal_anatomy(rng, img, sev=sev, thorax=thorax, noise=noise)
        img = _cxr_frontal_findings(rng, img, sev=sev, lung=lung, noise=noise, at_side=at_side)
    img = (img - 0.06) * rng.uniform(0.85, 1.15) + 0.06 + rng.uniform(-0.05, 0.05)
    img = img + rng.normal(0.0, 0.02, img.shape).astype(np.float32)
    return _to_uint8(img)


def _soft_ellipse(
    size: int, cy: float, cx: float, ry: float, rx: float, edge: float = 0.06
) -> np.ndarray:
    """An ellipse (unit coordinates) with a linear soft edge, float [size, size] in [0, 1]."""
    yy, xx = _grid(size)
    d = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    return np.clip((1.0 - d) / edge, 0.0, 1.0)


def _cxr_lateral(img: np.ndarray, sev: Mapping[str, float]) -> np.ndarray:
    """The lateral view: one lung field, the heart, effusion and edema opacity (no draws)."""
    size = img.shape[0]
    yy, _ = _grid(size)
    lung = _soft_ellipse(size, -0.05, 0.0, 0.6, 0.45)
    heart = _soft_ellipse(size, 0.3, -0.2, 0.25, 0.22 * (1 + 0.5 * sev["Cardiomegaly"]))
    img = img - 0.3 * lung + 0.2 * heart * lung
    opac = sev["Pleural Effusion"] * (yy > 0.35) + 0.6 * sev["Edema"] * lung
    return img + 0.25 * opac * lung


def _cxr_frontal_anatomy(
    rng: np.random.Generator,
    img: np.ndarray,
    *,
    sev: Mapping[str, float],
    thorax: np.ndarray,
    noise: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Lungs (one smaller with atelectasis), ribs, spine, heart and diaphragm of a frontal view.

    Returns (image, lung coverage [size, size], the side -1.0 / 1.0 of the atelectasis).
    """
    size = img.shape[0]
    yy, xx = _grid(size)
    lungs = []
    vol_loss = 0.15 * sev["Atelectasis"]
    at_side = rng.choice([-1.0, 1.0])
    for side in (-1.0, 1.0):
        ry = 0.55 * rng.uniform(0.95, 1.05) * (1.0 - (vol_loss if side == at_side else 0.0))
        lungs.append(_soft_ellipse(size, -0.05 - (0.55 - ry) * 0.5, side * 0.37, ry, 0.28))
    lung = np.maximum(*lungs)
    img = img - 0.33 * lung
    # Ribs: bright arcs across each lung field, posterior ribs curve down laterally.
    for k in range(9):
        y0 = -0.6 + 0.14 * k + rng.uniform(-0.02, 0.02)
        curve = y0 + 0.35 * (np.abs(xx) - 0.1) ** 2 - 0.15 * np.abs(xx)
        band = np.clip(1.0 - np.abs(yy - curve) / 0.025, 0.0, 1.0)
        img = img + 0.09 * band * lung
    img = img + 0.22 * np.clip(1.0 - np.abs(xx) / 0.09, 0.0, 1.0) * thorax  # spine
    heart_rx = 0.2 * rng.uniform(0.9, 1.08) * (1.0 + 0.6 * sev["Cardiomegaly"])
    heart = _soft_ellipse(size, 0.2, 0.06 + 0.35 * (heart_rx - 0.2), 0.22, heart_rx, edge=0.1)
    img = np.maximum(img, (0.66 + 0.03 * noise) * heart + img * (1 - heart))
    dome = 0.48 + 0.08 * xx**2 - 0.12 * np.cos(xx * 4.0) ** 2
    img = np.where(yy > dome + 0.08, np.maximum(img, 0.52 + 0.02 * noise), img)
    return img, lung, at_side


def _cxr_frontal_findings(
    rng: np.random.Generator,
    img: np.ndarray,
    *,
    sev: Mapping[str, float],
    lung: np.ndarray,
    noise: np.ndarray,
    at_side: float,
) -> np.ndarray:
    """The signs of the present findings on a frontal view, drawn in a fixed order."""
    size = img.shape[0]
    yy, xx = _grid(size)
    if sev["Pleural Effusion"] > 0:  # basal opacity with a meniscus, one or both sides
        s = sev["Pleural Effusion"]
        sides = [-1.0, 1.0] if rng.uniform() < 0.5 else [rng.choice([-1.0, 1.0])]
        for side in sides:
            level = 0.5 - 0.4 * s + 0.25 * (np.abs(xx - side * 0.37) - 0.28) ** 1
            meniscus = np.clip((yy - level) / 0.06, 0.0, 1.0) * (np.sign(xx) == side)
            img = img + 0.33 * s * meniscus * lung
    if sev["Edema"] > 0:  # perihilar haze
        s = sev["Edema"]
        hilum = sum(
            np.exp(-((yy - 0.0) ** 2 + (xx - side * 0.2) ** 2) / (2 * 0.22**2))
            for side in (-1.0, 1.0)
        )
        img = img + 0.22 * s * hilum * lung * (1.0 + 0.3 * noise)
        for _ in range(int(6 * s)):  # Kerley B lines at the lung bases
            y = rng.uniform(0.2, 0.45)
            side = rng.choice([-1.0, 1.0])
            line = (np.abs(yy - y) < 0.008) & (np.abs(xx - side * 0.6) < 0.05)
            img = img + 0.15 * line * lung
    if sev["Consolidation"] > 0:
        img = img + 0.4 * sev["Consolidation"] * _consolidation(rng, size) * lung
    if sev["Atelectasis"] > 0:  # a plate-like band on the smaller lung
        s = sev["Atelectasis"]
        y = rng.uniform(0.15, 0.35)
        tilt = rng.uniform(-0.25, 0.25)
        band = np.clip(1.0 - np.abs(yy - y - tilt * (xx - at_side * 0.37)) / 0.03, 0.0, 1.0)
        img = img + 0.3 * s * band * (np.sign(xx) == at_side) * lung
    return img


def _consolidation(rng: np.random.Generator, size: int) -> np.ndarray:
    """A dense patch of four overlapping soft ellipses in one lung, float [size, size]."""
    side = rng.choice([-1.0, 1.0])
    cy, cx = rng.uniform(-0.3, 0.35), side * rng.uniform(0.28, 0.45)
    patch = np.zeros((size, size), np.float32)
    for _ in range(4):
        patch = np.maximum(
            patch,
            _soft_ellipse(
                size,
                cy + rng.uniform(-0.08, 0.08),
                cx + rng.uniform(-0.06, 0.06),
                rng.uniform(0.06, 0.12),
                rng.uniform(0.05, 0.1),
                edge=0.3,
            ),
        )
    return patch


@dataclasses.dataclass(frozen=True)
class CxrSample:
    """One synthetic chest X-ray study image and its CheXpert-style metadata.

    image: uint8 [H, W]; raw_labels: every CHEXPERT_OBSERVATIONS name -> 1.0, 0.0, -1.0 or None
    (blank), as in CheXpert's train.csv; findings: the severities actually drawn.
    """

    image: np.ndarray
    raw_labels: dict[str, float | None]
    findings: dict[str, float]
    patient: int
    study: int
    view: str  # "frontal" | "lateral"
    ap_pa: str  # "AP" | "PA" ("" for lateral)
    sex: str
    age: int

    @property
    def patient_id(self) -> str:
        return f"patient{self.patient + 1:05d}"


def cxr_findings(rng: np.random.Generator) -> tuple[dict[str, float], dict[str, float | None]]:
    """Draws severities for the 5 findings and their raw CheXpert values (14 observations).

    Present findings are reported 1.0, or -1.0 (uncertain) at a lower severity; absent ones
    are 0.0 or blank (not mentioned), and sometimes uncertain with a faint sign.
    """
    severity: dict[str, float] = {}
    raw: dict[str, float | None] = {name: None for name in CHEXPERT_OBSERVATIONS}
    for name in CHEXPERT_COMPETITION_TASKS:
        if rng.uniform() < _FINDING_PREVALENCE[name]:
            if rng.uniform() < 0.15:
                severity[name], raw[name] = rng.uniform(0.3, 0.6), -1.0
            else:
                severity[name], raw[name] = rng.uniform(0.55, 1.0), 1.0
        elif rng.uniform() < 0.05:
            severity[name], raw[name] = rng.uniform(0.0, 0.25), -1.0
        else:
            severity[name], raw[name] = 0.0, (0.0 if rng.uniform() < 0.35 else None)
    if any(raw[n] is not None and raw[n] != 0.0 for n in ("Edema", "Consolidation", "Atelectasis")):
        raw["Lung Opacity"] = 1.0
    if all(raw[n] in (None, 0.0) for n in CHEXPERT_COMPETITION_TASKS):
        raw["No Finding"] = 1.0
    if rng.uniform() < 0.1:
        raw["Support Devices"] = 1.0
    return severity, raw


def sample_cxr(index: int, *, seed: int = 0, size: int = 64) -> CxrSample:
    """Example `index` of the synthetic CXR set of `seed` (patient index // 3, studies 1-3)."""
    patient, study_index = divmod(index, 3)
    prng = np.random.default_rng([seed, _KIND_CODE["cxr"], patient])
    sex = str(prng.choice(["Male", "Female"]))
    age = int(prng.integers(18, 90))
    chronic_cardiomegaly = prng.uniform() < 0.12
    rng = np.random.default_rng([seed, _KIND_CODE["cxr"], patient, study_index, 1])
    severity, raw = cxr_findings(rng)
    if chronic_cardiomegaly and raw["Cardiomegaly"] in (None, 0.0):
        severity["Cardiomegaly"], raw["Cardiomegaly"] = rng.uniform(0.6, 1.0), 1.0
        raw["No Finding"] = None
    view = "lateral" if rng.uniform() < 0.15 else "frontal"
    ap_pa = "" if view == "lateral" else str(rng.choice(["AP", "PA"]))
    image = cxr_image(rng, size=size, findings=severity, view=view)
    return CxrSample(image, raw, severity, patient, study_index + 1, view, ap_pa, sex, age)


def cxr_labels(
    raw: Mapping[str, float | None], tasks: Sequence[str], *, uncertain_policy: str = "ignore"
) -> tuple[list[float], list[float]]:
    """(labels, mask) for `tasks` from raw CheXpert values; blank counts as negative.

    uncertain_policy: "ignore" (mask out -1.0), "ones" (-1.0 -> 1) or "zeros" (-1.0 -> 0).
    """
    if uncertain_policy not in UNCERTAIN_POLICIES:
        raise ValueError(
            f"uncertain_policy must be one of {UNCERTAIN_POLICIES}, got {uncertain_policy!r}"
        )
    labels, mask = [], []
    for task in tasks:
        if task not in raw:
            raise ValueError(
                f"unknown CheXpert task {task!r}; choose from {list(CHEXPERT_OBSERVATIONS)}"
            )
        value = raw[task]
        if value is None or value == 0.0:
            label, known = 0.0, 1.0
        elif value == 1.0:
            label, known = 1.0, 1.0
        elif uncertain_policy == "ignore":
            label, known = 0.0, 0.0
        else:
            label, known = (1.0 if uncertain_policy == "ones" else 0.0), 1.0
        labels.append(label)
        mask.append(known)
    return labels, mask


# ----------------------------------------------------------------------------- natural
def natural_image(rng: np.random.Generator, *, size: int, cls: int) -> np.ndarray:
    """A natural-image-like source-task picture of class `cls`, uint8 [size, size, 3].

    Class = (shape, texture) of the foreground object, NATURAL_CLASSES[cls]; colours, position,
    scale, rotation and the textured background are random, so colour alone tells nothing.
    """
    if cls not in range(len(NATURAL_CLASSES)):
        raise ValueError(f"natural class must be 0..{len(NATURAL_CLASSES) - 1}, got {cls}")
    shape, texture = NATURAL_SHAPES[cls // 3], NATURAL_TEXTURES[cls % 3]
    yy, xx = _grid(size)
    c0, c1 = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
    ramp = (0.5 + 0.5 * np.tanh(yy * rng.uniform(-2, 2) + xx * rng.uniform(-2, 2)))[:, :, None]
    img = c0 * (1 - ramp) + c1 * ramp + 0.08 * _smooth_noise(rng, size, 6)[:, :, None]

    cy, cx = rng.uniform(-0.35, 0.35, 2)
    radius = rng.uniform(0.35, 0.6)
    theta = rng.uniform(0, 2 * np.pi)
    u = np.cos(theta) * (xx - cx) + np.sin(theta) * (yy - cy)
    v = -np.sin(theta) * (xx - cx) + np.cos(theta) * (yy - cy)
    if shape == "circle":
        inside = u**2 + v**2 < radius**2
    elif shape == "square":
        inside = np.maximum(np.abs(u), np.abs(v)) < radius * 0.8
    elif shape == "triangle":
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            a = theta + 2 * np.pi * k / 3
            inside &= np.cos(a) * (xx - cx) + np.sin(a) * (yy - cy) < radius * 0.5
    else:  # cross
        arm = radius * 0.3
        inside = ((np.abs(u) < arm) & (np.abs(v) < radius)) | (
            (np.abs(v) < arm) & (np.abs(u) < radius)
        )

    f0, f1 = rng.uniform(0.0, 1.0, 3), rng.uniform(0.0, 1.0, 3)
    freq = rng.uniform(6.0, 12.0)
    if texture == "solid":
        pattern = np.zeros_like(u)
    elif texture == "stripes":
        pattern = (np.sin(freq * u * np.pi / 2) > 0).astype(np.float32)
    else:
        pattern = ((np.sin(freq * u * np.pi / 2) > 0) ^ (np.sin(freq * v * np.pi / 2) > 0)).astype(
            np.float32
        )
    fg = f0 * (1 - pattern[:, :, None]) + f1 * pattern[:, :, None]
    img = np.where(inside[:, :, None], fg, img).astype(np.float32)
    for _ in range(int(rng.integers(0, 3))):  # small distractor blobs
        cy_px, cx_px = rng.uniform(0, size, 2)
        _discs(img, cy_px, cx_px, rng.uniform(0.03, 0.08) * size, rng.uniform(0, 1, 3), 0.8)
    return _to_uint8(img + rng.normal(0.0, 0.02, img.shape).astype(np.float32))


@dataclasses.dataclass(frozen=True)
class NaturalSample:
    """One synthetic natural image: image uint8 [H, W, 3] and its class index."""

    image: np.ndarray
    cls: int
    patient: int

    @property
    def patient_id(self) -> str:
        return f"img{self.patient:07d}"


def sample_natural(index: int, *, seed: int = 0, size: int = 64) -> NaturalSample:
    """Example `index` of the synthetic natural set of `seed`; classes are balanced by index."""
    rng = np.random.default_rng([seed, _KIND_CODE["natural"], index])
    cls = index % len(NATURAL_CLASSES)
    return NaturalSample(natural_image(rng, size=size, cls=cls), cls, index)


# ----------------------------------------------------------------------------- kinds
@dataclasses.dataclass(frozen=True)
class SyntheticKind:
    """One synthetic dataset kind: how example `index` is drawn, labelled and recorded.

    `draw(index, *, seed, size, style)` returns a sample with `.image` (uint8 [H, W] or
    [H, W, 3]) and `.patient_id`; `labels(sample, tasks, uncertain_policy)` its (labels,
    mask), each [len(tasks)]; examples `index // examples_per_patient` share a patient.
    `label_policy(uncertain_policy)` and `single_label(tasks)` go to dataset_info.json;
    `styled` kinds record their `FundusStyle` there too.
    """

    description: str
    tasks: tuple[str, ...]
    examples_per_patient: int
    draw: Callable[..., Any]
    labels: Callable[[Any, tuple[str, ...], str], tuple[list[float], list[float]]]
    label_policy: Callable[[str], Any] = lambda uncertain_policy: "exact"
    single_label: Callable[[tuple[str, ...]], bool] = lambda tasks: False
    styled: bool = False


SYNTHETIC_KINDS: Registry[SyntheticKind] = Registry("synthetic kind")


def _fundus_labels(
    sample: FundusSample, tasks: tuple[str, ...], uncertain_policy: str
) -> tuple[list[float], list[float]]:
    del uncertain_policy
    return fundus_labels(sample.grade, tasks), [1.0] * len(tasks)


def _cxr_labels(
    sample: CxrSample, tasks: tuple[str, ...], uncertain_policy: str
) -> tuple[list[float], list[float]]:
    return cxr_labels(sample.raw_labels, tasks, uncertain_policy=uncertain_policy)


def _natural_labels(
    sample: NaturalSample, tasks: tuple[str, ...], uncertain_policy: str
) -> tuple[list[float], list[float]]:
    del uncertain_policy
    return [float(NATURAL_CLASSES[sample.cls] == t) for t in tasks], [1.0] * len(tasks)


def _draw_cxr(index: int, *, seed: int, size: int, style: FundusStyle) -> CxrSample:
    del style
    return sample_cxr(index, seed=seed, size=size)


def _draw_natural(index: int, *, seed: int, size: int, style: FundusStyle) -> NaturalSample:
    del style
    return sample_natural(index, seed=seed, size=size)


SYNTHETIC_KINDS.add(
    "fundus",
    SyntheticKind(
        description="colour fundus photographs graded for diabetic retinopathy (ICDR 0-4)",
        tasks=("referable_dr",),
        examples_per_patient=2,
        draw=sample_fundus,
        labels=_fundus_labels,
        # The one-hot DR grades are mutually exclusive (checked on write).
        single_label=lambda tasks: all(t.startswith("dr_grade_") for t in tasks),
        styled=True,
    ),
)
SYNTHETIC_KINDS.add(
    "cxr",
    SyntheticKind(
        description="chest radiographs with CheXpert-style labels of the 5 competition findings",
        tasks=CHEXPERT_COMPETITION_TASKS,
        examples_per_patient=3,
        draw=_draw_cxr,
        labels=_cxr_labels,
        label_policy=lambda uncertain_policy: {"uncertain": uncertain_policy, "blank": "zeros"},
    ),
)
SYNTHETIC_KINDS.add(
    "natural",
    SyntheticKind(
        description="natural-image-like pictures of 12 shape x texture classes (a source task)",
        tasks=NATURAL_CLASSES,
        examples_per_patient=1,
        draw=_draw_natural,
        labels=_natural_labels,
        single_label=lambda tasks: True,  # the classes are mutually exclusive
    ),
)


def get_kind(kind: str) -> SyntheticKind:
    """The registry entry of `kind`; ValueError names the known kinds."""
    if kind not in SYNTHETIC_KINDS:
        raise ValueError(f"unknown synthetic kind {kind!r}; choose from {list(KINDS)}")
    return SYNTHETIC_KINDS.get(kind)


# ----------------------------------------------------------------------------- dataset writing
def default_tasks(kind: str) -> tuple[str, ...]:
    """The task list of a synthetic dataset kind."""
    return get_kind(kind).tasks


def patient_of(kind: str, index: int) -> int:
    """The patient number of example `index` (no image is drawn)."""
    return index // get_kind(kind).examples_per_patient


def _render(
    job: tuple[str, int, int, int, tuple[str, ...], str, FundusStyle],
) -> dict[str, Any]:
    """Draws and encodes one example; runs in worker processes (no TensorFlow)."""
    kind, index, seed, size, tasks, uncertain_policy, style = job
    entry = get_kind(kind)
    sample = entry.draw(index, seed=seed, size=size, style=style)
    labels, mask = entry.labels(sample, tasks, uncertain_policy)
    image = sample.image
    return {
        "image_bytes": encode_png(image),
        "height": image.shape[0],
        "width": image.shape[1],
        "channels": 1 if image.ndim == 2 else image.shape[2],
        "example_id": f"synthetic_{kind}/s{seed}/{index:07d}",
        "patient_id": sample.patient_id,
        "labels": labels,
        "mask": mask,
    }


def split_patients(
    kind: str, num_examples: int, *, seed: int, valid_fraction: float, test_fraction: float
) -> dict[int, str]:
    """Seeded patient-level split of examples 0..num_examples-1 of `kind`: patient -> split.

    The converters' split (`splits.split_by_patient`) of the patient numbers.
    """
    if not (
        0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1
    ):
        raise ValueError(
            f"bad split fractions valid={valid_fraction} test={test_fraction}: "
            "each must be in [0, 1) with a sum below 1"
        )
    return split_by_patient(
        [patient_of(kind, i) for i in range(num_examples)],
        fractions={"valid": valid_fraction, "test": test_fraction},
        seed=seed,
    )


def write_synthetic_dataset(
    *,
    kind: str,
    output_dir: str,
    num_examples: int,
    image_size: int = 64,
    seed: int = 0,
    valid_fraction: float = 0.2,
    test_fraction: float = 0.2,
    num_shards: int = 2,
    workers: int = 1,
    tasks: Sequence[str] | None = None,
    uncertain_policy: str = "ignore",
    overwrite: bool = False,
    fundus_style: FundusStyle = DEFAULT_FUNDUS_STYLE,
) -> dict[str, Any]:
    """Renders `num_examples` synthetic images of `kind` and writes a dataset; returns its info.

    `fundus_style` sets the fundus task's difficulty (recorded in dataset_info.json).

    Splits are by patient (seeded); images are PNG. `tasks` defaults to `default_tasks(kind)`
    (fundus also accepts "dr_grade_0".."dr_grade_4"; cxr any CheXpert observations, with
    `uncertain_policy` for -1.0 values and blank = negative). `workers` > 1 renders in a
    spawn-based process pool; the output is identical for any worker count.
    """
    tasks = tuple(tasks) if tasks else default_tasks(kind)
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    if uncertain_policy not in UNCERTAIN_POLICIES:
        raise ValueError(
            f"uncertain_policy must be one of {UNCERTAIN_POLICIES}, got {uncertain_policy!r}"
        )
    # Validates kind and tasks up front.
    _render((kind, 0, seed, 8, tasks, uncertain_policy, fundus_style))
    assignment = split_patients(
        kind,
        num_examples,
        seed=seed,
        valid_fraction=valid_fraction,
        test_fraction=test_fraction,
    )
    jobs = [
        (kind, i, seed, image_size, tasks, uncertain_policy, fundus_style)
        for i in range(num_examples)
    ]
    # Written into a staging folder and published when complete (see atomic.py): an old
    # dataset in output_dir stays loadable until then; SIGTERM/SIGINT stop the pool.
    with (
        atomic.interruptible(),
        atomic.staged_dataset(output_dir, overwrite=overwrite) as stage,
    ):
        writers = _render_into(
            stage,
            kind=kind,
            jobs=jobs,
            tasks=tasks,
            workers=workers,
            num_shards=num_shards,
            assignment=assignment,
        )
        return _finalize(
            stage,
            writers=writers,
            kind=kind,
            tasks=tasks,
            seed=seed,
            image_size=image_size,
            uncertain_policy=uncertain_policy,
            fundus_style=fundus_style,
        )


def _render_into(
    stage: str,
    *,
    kind: str,
    jobs: list[tuple],
    tasks: tuple[str, ...],
    workers: int,
    num_shards: int,
    assignment: Mapping[str, str],
) -> dict[str, Any]:
    """Renders `jobs` (on `workers` spawned processes when > 1) into split shards in `stage`."""
    # Imported here so worker processes, which import this module, never load TensorFlow.
    from transfusion_tf.data import writer as writer_lib

    splits = ("train", "valid", "test")
    with contextlib.ExitStack() as stack:
        writers = {
            split: stack.enter_context(
                writer_lib.ShardedWriter(stage, split, tasks=tasks, num_shards=num_shards)
            )
            for split in splits
        }
        if workers > 1:
            # Leaving the block terminates the pool; workers also end if this process dies.
            pool = stack.enter_context(
                multiprocessing.get_context("spawn").Pool(
                    processes=workers, initializer=atomic.worker_init, initargs=(os.getpid(),)
                )
            )
            results = pool.imap(
                _render, jobs, chunksize=max(1, min(32, len(jobs) // (4 * workers)))
            )
        else:
            results = map(_render, jobs)
        for i, example in enumerate(results):
            writers[assignment[patient_of(kind, i)]].write(**example)
    return writers


def _finalize(
    stage: str,
    *,
    writers: Mapping[str, Any],
    kind: str,
    tasks: tuple[str, ...],
    seed: int,
    image_size: int,
    uncertain_policy: str,
    fundus_style: FundusStyle,
) -> dict[str, Any]:
    from transfusion_tf.data import writer as writer_lib

    splits = tuple(writers)
    entry = get_kind(kind)
    return writer_lib.finalize_dataset(
        stage,
        tasks=tasks,
        source_format=f"synthetic_{kind}",
        label_policy=entry.label_policy(uncertain_policy),
        image_encoding="png",
        split_stats={split: writers[split].stats for split in splits},
        extra={
            "synthetic": {
                "kind": kind,
                "seed": seed,
                "image_size": image_size,
                **({"fundus_style": dataclasses.asdict(fundus_style)} if entry.styled else {}),
            }
        },
        single_label=entry.single_label(tasks),
    )
