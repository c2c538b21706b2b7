"""Patient-level splits: every converter and the synthetic datasets carve valid/test this way.

A patient's images all land in one split, so no patient is seen in training and evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

import numpy as np

from transfusion_tf.data.info import SPLITS

P = TypeVar("P", str, int)


def split_by_patient(
    patient_ids: Sequence[P], *, fractions: Mapping[str, float], seed: int
) -> dict[P, str]:
    """Assigns each distinct patient to a split; returns {patient_id: split}.

    `fractions` gives the share of patients for each split carved out (e.g. {"valid": 0.1,
    "test": 0.1}); the rest go to "train". Patients are sorted, then permuted by a
    `numpy.random.default_rng(seed)`, so the result depends only on the set of ids and the seed.
    A split asked for with a positive fraction gets at least one patient while train keeps one.
    """
    patients = sorted(set(patient_ids))
    order = np.random.default_rng(seed).permutation(len(patients))
    shuffled = [patients[i] for i in order]
    assignment: dict[P, str] = {}
    start = 0
    for split in sorted(fractions, key=lambda s: SPLITS.index(s) if s in SPLITS else 99):
        fraction = fractions[split]
        count = int(round(fraction * len(patients)))
        if fraction > 0 and count == 0:
            count = 1
        count = min(count, max(0, len(patients) - start - 1))
        for patient in shuffled[start : start + count]:
            assignment[patient] = split
        start += count
    for patient in shuffled[start:]:
        assignment[patient] = "train"
    return assignment
