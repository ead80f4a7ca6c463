"""Purpose limitation: an output may only use sources whose purposes include its own.

Each source states its purposes in the catalogue (``SourceSpec.use.purposes``). Each output
asset states its own, either in its metadata (``toda/purposes``: a purpose key, or several
separated by commas) or in :data:`OUTPUT_PURPOSES` here. :func:`check_purposes` walks the asset
graph from every asset back to the ``staging/<source>`` assets it reads, directly or through
marts and models, and refuses the whole set of definitions — naming the asset, its purpose, the
source and the path between them — when a source does not list the purpose, or when an asset
that reads a source declares no purpose at all.

Staging and mart assets are intermediate (groups :data:`INTERMEDIATE_GROUPS`): they need no
purpose of their own; whatever reads them does.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable, Mapping

from toda_platform.catalogue import CATALOGUE, PURPOSES

METADATA_KEY = "toda/purposes"
INTERMEDIATE_GROUPS = frozenset({"sources", "integrated", "schools"})

# asset key (slash-joined) -> its purpose(s), for assets that do not carry them in metadata
OUTPUT_PURPOSES: dict[str, tuple[str, ...]] = {
    "models/futoukou_risk": ("early_support",),
    "models/source_ablation": ("early_support",),
    "models/fairness_audit": ("early_support",),
    "scoring/feature_drift": ("early_support",),
    "outputs/risk_scores": ("early_support",),
    "outputs/known_cases": ("early_support",),
    # the portal's snapshot bundles what each page shows: each source serves one of these
    "serving/snapshot": ("early_support", "school_improvement", "support_evaluation", "hardship_screening"),
    "outputs/school_karte": ("school_improvement",),
    "outputs/support_effects": ("support_evaluation",),
    "outputs/hardship_screen": ("hardship_screening",),
}


class PurposeError(ValueError):
    """The definitions use a source beyond its purposes (or an output declares none)."""


def _name(key) -> str:
    return "/".join(key.path)


def source_of(key) -> str | None:
    """``staging/<source>`` → the source key; anything else → None."""
    path = list(key.path)
    return path[1] if len(path) == 2 and path[0] == "staging" and path[1] in CATALOGUE else None


def _parse(value) -> tuple[str, ...]:
    if value is None:
        return ()
    raw = getattr(value, "value", value)  # a MetadataValue or a plain string / list
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return tuple(p.strip() for p in items if p and p.strip())


def graph(assets: Iterable) -> tuple[dict, dict, dict]:
    """(parents, group, metadata) per asset key, from ``AssetsDefinition`` objects."""
    parents, groups, metadata = {}, {}, {}
    for a in assets:
        for key in a.keys:
            parents[key] = set(a.asset_deps.get(key, ()))
            groups[key] = a.group_names_by_key.get(key)
            metadata[key] = a.metadata_by_key.get(key, {})
    return parents, groups, metadata


def lineage_sources(parents: Mapping, key) -> dict[str, list]:
    """Every source ``key`` reads, with one path of asset keys from the source to ``key``."""
    found: dict[str, list] = {}
    came_from = {key: None}
    queue = deque([key])
    while queue:
        node = queue.popleft()
        src = source_of(node)
        if src is not None and node != key:
            path, step = [], node
            while step is not None:
                path.append(step)
                step = came_from[step]
            found.setdefault(src, path)
            continue  # a staging table's own references (the registry) are not "read" through it
        for parent in parents.get(node, ()):
            if parent not in came_from:
                came_from[parent] = node
                queue.append(parent)
    return found


def declared_purposes(key, metadata: Mapping) -> tuple[str, ...]:
    return _parse(metadata.get(METADATA_KEY)) or OUTPUT_PURPOSES.get(_name(key), ())


def violations(assets: Iterable) -> list[str]:
    """Every breach of purpose limitation in these assets, as sentences (empty: none)."""
    parents, groups, metadata = graph(assets)
    problems = []
    for key in sorted(parents, key=_name):
        if source_of(key) is not None or groups.get(key) in INTERMEDIATE_GROUPS:
            continue
        sources = lineage_sources(parents, key)
        if not sources:
            continue
        purposes = declared_purposes(key, metadata[key])
        if not purposes:
            problems.append(
                f"asset {_name(key)} reads the sources {', '.join(sorted(sources))} but declares no "
                f"purpose: set metadata {METADATA_KEY!r} or add it to "
                f"toda_platform.governance.purposes.OUTPUT_PURPOSES (one of {', '.join(PURPOSES)})")
            continue
        unknown = [p for p in purposes if p not in PURPOSES]
        for purpose in unknown:
            problems.append(f"asset {_name(key)} declares the unknown purpose {purpose!r}; "
                            f"known: {', '.join(PURPOSES)}")
        if unknown:
            continue
        # An asset serving several purposes (the portal's snapshot bundles the list, the karte,
        # the support effects and the screen) may read a source for any one of them; an asset
        # with one purpose may read only sources that allow it.
        for src, path in sorted(sources.items()):
            allowed = CATALOGUE[src].use.purposes
            if not set(purposes) & set(allowed):
                said = ", ".join(f"{p}: {PURPOSES[p]}" for p in purposes)
                problems.append(
                    f"asset {_name(key)} (purpose {said}) uses source "
                    f"{src} ({CATALOGUE[src].title_ja}) via {' → '.join(_name(k) for k in path)}, "
                    f"but {src} may serve only: {', '.join(allowed)}")
    return problems


def check_purposes(assets: Iterable) -> None:
    """Raise :class:`PurposeError` listing every breach; the definitions do not load."""
    problems = violations(list(assets))
    if problems:
        raise PurposeError("purpose limitation (個人情報の保護に関する法律 第61条・第69条): the "
                           "definitions refuse to load:\n  " + "\n  ".join(problems))


def output_purposes(assets: Iterable) -> dict[str, dict]:
    """Per output asset: its purposes and the sources it reads (for the notice and the register)."""
    parents, groups, metadata = graph(list(assets))
    out = {}
    for key in sorted(parents, key=_name):
        if source_of(key) is not None or groups.get(key) in INTERMEDIATE_GROUPS:
            continue
        sources = lineage_sources(parents, key)
        if sources:
            out[_name(key)] = {"purposes": declared_purposes(key, metadata[key]),
                               "sources": sorted(sources)}
    return out
