"""Independent random streams, one per purpose (and per year, school, source…).

Every draw in the city comes from ``stream(seed, *labels)``. A stream depends only on the seed
and its labels, never on what was drawn before it or on the order in which sources are written,
so changing ``today``, adding a source or writing files in another order cannot shift any other
part of the simulation.
"""

from __future__ import annotations

import zlib

import numpy as np


def stream(seed: int, *labels: object) -> np.random.Generator:
    """A generator keyed by the seed and a path of labels, e.g. ``stream(seed, "attendance", 2024)``."""
    spawn_key = tuple(zlib.crc32(str(label).encode("utf-8")) for label in labels)
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=spawn_key))
