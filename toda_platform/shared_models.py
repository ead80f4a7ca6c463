"""A young city borrows a model: the deployment's shared model registry.

A city of a deployment whose ``futoukou_risk`` has a champion exports it to
``$TODA_DEPLOYMENT/shared/models/<city>/``: the LightGBM model file and its metadata (feature
names, calibration, band thresholds, the fold's school years, a hash of the training rows). No
row about a child leaves the city: a model file holds trees (split thresholds, leaf values and
the number of training rows in each leaf, at least LightGBM's ``min_data_in_leaf``), no pupil.

A city without a champion of its own — too few completed school years (``models.status``:
"needs 2 completed school years …") — scores its cohort with another city's exported champion,
on its own pseudonymous features (a feature the lending city had and the young city lacks is
missing, as LightGBM allows). The list says whose model it is (``model_version``
``<city>:v<version>``), and the drift gate measures that model's features like any champion.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

MODEL_FILE = "model.txt"
META_FILE = "meta.json"  # written last: a folder with it holds a complete export


def export_champion(tracker, target: Path, city: str, alias: str = "champion") -> str | None:
    """Copy the version behind ``alias`` to ``target`` (unless it is there already); returns the
    version exported, or None when the city has no champion."""
    mv = tracker.version_by_alias(alias)
    if mv is None:
        return None
    meta_file = target / META_FILE
    if meta_file.exists() and json.loads(meta_file.read_text(encoding="utf-8")).get("version") == str(mv.version):
        return str(mv.version)
    booster, meta = tracker.load_version(mv.version)
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f".{MODEL_FILE}.tmp"
    booster.save_model(str(tmp))
    os.replace(tmp, target / MODEL_FILE)
    shared = {**meta, "city": city, "model_name": tracker.model_name, "version": str(mv.version),
              "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    tmp = target / f".{META_FILE}.tmp"
    tmp.write_text(json.dumps(shared, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, meta_file)
    return str(mv.version)


def lenders(shared: Path, city: str) -> list[dict]:
    """The other cities' exported champions, the one trained on most school years first."""
    found = []
    for folder in sorted(shared.glob(f"*/{META_FILE}")) if shared.is_dir() else []:
        meta = json.loads(folder.read_text(encoding="utf-8"))
        if folder.parent.name != city and (folder.parent / MODEL_FILE).exists():
            found.append({**meta, "city": folder.parent.name})
    return sorted(found, key=lambda m: (-len((m.get("fold") or {}).get("train_years", [])), m["city"]))


def borrow(shared: Path, city: str):
    """(version label, booster, metadata) of the best other city's champion, or None."""
    import lightgbm as lgb

    candidates = lenders(shared, city)
    if not candidates:
        return None
    meta = candidates[0]
    booster = lgb.Booster(model_file=str(shared / meta["city"] / MODEL_FILE))
    return f"{meta['city']}:v{meta['version']}", booster, {**meta, "borrowed_from": meta["city"]}
