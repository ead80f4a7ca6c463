"""MLflow: runs, the registered model ``futoukou_risk`` and its promotion gate.

* Tracking on a sqlite store (``$TODA_HOME/mlflow.db``) with artifacts beside it
  (``$TODA_HOME/mlartifacts``); experiment ``futoukou_risk``.
* One run per model and fold (``<model>_<test year>``), ablations as nested runs under one
  parent run. Each run logs its parameters, the metrics of the headline as-of date, of the year
  (means over the as-of dates) and per as-of date (as steps, so the UI draws them month by
  month), the training data's fingerprint, and plots and tables as artifacts.
* The LightGBM model of the latest completed year's fold is logged and registered as a new
  version of ``futoukou_risk``; what scoring needs beside the trees (feature list, calibration,
  band thresholds) travels in the logged model's metadata, so loading a version through the
  registry gives everything.

**Promotion gate** (:func:`decide`): a new version becomes ``champion`` only if its precision in
the top 5% on the latest completed year (mean over that year's as-of dates) is higher than the
current champion's on the same rows, and its calibration (expected calibration error, same
rows) is not worse by more than :data:`ECE_TOLERANCE` (half a percentage point: the ECE of
one year's as-of dates moves by about that much between two fits of the same model on the
default city); otherwise it becomes ``challenger``.
Without a champion, the bar is the rule baseline on the same rows. Equal precision does not
promote, so re-running the same training on the same data leaves the champion in place. The
decision and its figures are logged to the candidate's run, as tags on the model version and
as ``gate/decision.json``.

Heavy imports (mlflow ~1–15 s cold) happen inside the functions that need them.
"""

from __future__ import annotations

import json
import math
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

EXPERIMENT = "futoukou_risk"
REGISTERED_MODEL = "futoukou_risk"
CHAMPION = "champion"
CHALLENGER = "challenger"
ECE_TOLERANCE = 0.005
PIP_REQUIREMENTS = ["lightgbm>=4.5,<5", "numpy", "pandas"]

PER_DATE_METRICS = ("precision_top", "recall_top", "r_precision", "recall_top1", "recall_top2",
                    "precision_school", "recall_school", "roc_auc", "pr_auc", "brier", "ece")

# MLflow 3's UI opens experiments in its GenAI layout (traces, prompts, no model registry) unless
# the experiment says it is model training, or the URL carries workflowType=machine_learning
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
UI_QUERY = "workflowType=machine_learning"
# nothing leaves a closed city network: MLflow's usage telemetry off (client, server and UI)
QUIET_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def quiet_environment(environ=None) -> dict:
    """Set MLflow's telemetry switches off in ``environ`` (default: this process), unless a
    value is already there; returns the environment. Called before mlflow is imported."""
    import os

    env = os.environ if environ is None else environ
    for k, v in QUIET_ENV.items():
        env.setdefault(k, v)
    return env


quiet_environment()


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# The gate (pure)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GateFigures:
    who: str               # "candidate v3", "champion v2", "rule_baseline"
    pr_auc: float          # mean PR-AUC (average precision) over the year's as-of dates
    ece: float             # mean expected calibration error over the same dates
    year: int
    dates: int = 0         # how many as-of dates the means are over

    @property
    def over(self) -> str:
        """What the figures are means over, in words."""
        n = f"{self.dates} " if self.dates else ""
        return f"over {n}as-of dates of {self.year}"


@dataclass(frozen=True)
class GateDecision:
    alias: str             # CHAMPION or CHALLENGER
    promoted: bool
    bar: str               # "champion" or "rule_baseline"
    reason: str
    candidate: GateFigures
    compared_with: GateFigures
    ece_tolerance: float = ECE_TOLERANCE

    def to_dict(self) -> dict:
        return {**asdict(self), "candidate": asdict(self.candidate),
                "compared_with": asdict(self.compared_with)}


def decide(candidate: GateFigures, champion: GateFigures | None, baseline: GateFigures,
           ece_tolerance: float = ECE_TOLERANCE) -> GateDecision:
    """Champion if it beats the bar's mean PR-AUC and is not worse calibrated; else challenger.

    PR-AUC, not precision in the top 5 %: with cases ~1.5 % of a cohort the top 5 % can hold at
    most ~0.3 of them, so any ranking that puts most cases near the top reaches that ceiling and
    the precision no longer tells models apart (on a 900-pupil test city the rule baseline, PR-AUC
    0.27, out-scored a LightGBM of PR-AUC 0.73 on it)."""
    bar_name, bar = ("champion", champion) if champion is not None else ("rule_baseline", baseline)
    if candidate.year != bar.year:
        raise ValueError(f"figures of different years: {candidate.year} vs {bar.year}")
    better = candidate.pr_auc > bar.pr_auc
    calibrated = candidate.ece <= bar.ece + ece_tolerance
    promoted = bool(better and calibrated)
    # the gate's figures are yearly means: say so, beside the headline's single-date figures
    why = []
    why.append(f"mean PR-AUC {candidate.over} {candidate.pr_auc:.3f} "
               f"{'>' if better else '<='} {bar.pr_auc:.3f} ({bar.who})")
    why.append(f"mean ECE {candidate.ece:.4f} {'<=' if calibrated else '>'} "
               f"{bar.ece:.4f} + {ece_tolerance} ({bar.who})")
    reason = ("promoted: " if promoted else "not promoted: ") + "; ".join(why)
    return GateDecision(CHAMPION if promoted else CHALLENGER, promoted, bar_name, reason,
                        candidate, bar, ece_tolerance)


def gate_figures(who: str, year: int, per_date: pd.DataFrame, subset: str = "all") -> GateFigures:
    """Gate figures from :func:`ml.evaluation.evaluate_scores` output of one school year."""
    m = per_date[per_date.subset == subset]
    return GateFigures(who, float(m.pr_auc.mean()), float(m.ece.mean()), int(year),
                       int(m.as_of_date.nunique()))


# ---------------------------------------------------------------------------------------------
# MLflow
# ---------------------------------------------------------------------------------------------

def tracking_uri(db_path: Path | str) -> str:
    return f"sqlite:///{Path(db_path).resolve()}"


MODEL_DESCRIPTION = (
    "Risk of becoming 不登校 (30+ non-illness absent days in the school year) for each pupil of the "
    "cohort at an as-of date. LightGBM on the point-in-time pupil features (marts.pupil_features); "
    "input: the feature columns listed in the model's metadata, NULL allowed; output: the raw "
    "log-odds, mapped to a probability by the Platt calibration in the metadata. Trained on "
    "completed school years only; the version behind the alias 'champion' scores "
    "outputs.risk_scores, 'challenger' is a registered version that did not pass the promotion "
    "gate (see its gate_reason tag).")


def date_step(day) -> tuple[int, int]:
    """(timestamp in ms, step) of an as-of date for a metric series: step = YYYYMMDD."""
    d = pd.Timestamp(day)
    return int(d.timestamp() * 1000), d.year * 10000 + d.month * 100 + d.day


def ensure_store(uri: str, artifact_location: str) -> None:
    """Create the sqlite store with its Default experiment's artifacts under ``artifact_location``
    (not MLflow's ``./mlruns`` in the working directory, i.e. inside the repository); an existing
    store whose Default experiment points elsewhere is moved there."""
    import sqlite3

    if not uri.startswith("sqlite:///"):
        return
    db = Path(uri[len("sqlite:///"):])
    if not db.exists():
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        db.parent.mkdir(parents=True, exist_ok=True)
        SqlAlchemyStore(uri, artifact_location)  # creates the schema and the Default experiment
    default = f"{artifact_location.rstrip('/')}/0"
    con = sqlite3.connect(db)
    try:
        con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0 "
                    "AND artifact_location <> ?", [default, default])
        con.commit()
    except sqlite3.OperationalError:  # a store without the table yet: MLflow creates it
        pass
    finally:
        con.close()


@dataclass
class Tracker:
    """The experiment and the registry on one store. Sets MLflow's global URIs on use."""

    tracking_uri: str
    artifact_location: str
    experiment: str = EXPERIMENT
    model_name: str = REGISTERED_MODEL
    _experiment_id: str | None = field(default=None, repr=False)

    def activate(self):
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        return mlflow

    @property
    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self.activate()
            ensure_store(self.tracking_uri, self.artifact_location)
            c = self.client
            exp = c.get_experiment_by_name(self.experiment)
            self._experiment_id = exp.experiment_id if exp else c.create_experiment(
                self.experiment, artifact_location=self.artifact_location)
            if exp is None or exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
                c.set_experiment_tag(self._experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return self._experiment_id

    @contextmanager
    def run(self, name: str, *, nested: bool = False, tags: dict | None = None) -> Iterator:
        mlflow = self.activate()
        with mlflow.start_run(experiment_id=self.experiment_id, run_name=name, nested=nested,
                              tags=tags or {}) as r:
            yield r

    # -- logging -------------------------------------------------------------------------------

    def log_params(self, params: dict, prefix: str = "") -> None:
        mlflow = self.activate()
        flat = {f"{prefix}{k}": (json.dumps(v) if isinstance(v, (list, dict, tuple)) else v)
                for k, v in params.items()}
        flat = {k: (str(v)[:5000]) for k, v in flat.items()}
        mlflow.log_params(flat)

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        mlflow = self.activate()
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if _finite(v)}, step=step)

    def log_per_date(self, per_date: pd.DataFrame) -> None:
        """Each metric per as-of date as a series keyed by the date: the step is the date as
        YYYYMMDD (20251105) and the timestamp the date itself, so a chart reads dates on its
        x-axis (step, or "wall time")."""
        from mlflow.entities import Metric

        import mlflow

        run = mlflow.active_run()
        batch = []
        for subset, g in per_date.groupby("subset"):
            for _, row in g.sort_values("as_of_date").iterrows():
                ts, step = date_step(row.as_of_date)
                for m in PER_DATE_METRICS:
                    if m in row and _finite(row[m]):
                        batch.append(Metric(f"by_date_{subset}_{m}", float(row[m]), ts, step))
        for i in range(0, len(batch), 900):
            self.client.log_batch(run.info.run_id, metrics=batch[i:i + 900])

    def log_table(self, frame: pd.DataFrame, artifact_path: str) -> None:
        mlflow = self.activate()
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / Path(artifact_path).name
            frame.to_csv(p, index=False)
            mlflow.log_artifact(str(p), str(Path(artifact_path).parent) if "/" in artifact_path else None)

    def log_json(self, obj, artifact_path: str) -> None:
        self.activate().log_dict(json.loads(json.dumps(obj, default=str)), artifact_path)

    def log_figure(self, fig, artifact_path: str) -> None:
        import matplotlib.pyplot as plt

        self.activate().log_figure(fig, artifact_path)
        plt.close(fig)

    # -- registry ------------------------------------------------------------------------------

    def log_lightgbm(self, booster, metadata: dict, example: pd.DataFrame | None = None) -> str:
        """Log and register the booster in the active run; returns the new version number.

        ``example``: a few rows of the feature matrix, from which the model's signature (input
        columns and types, output) is inferred. The registered model gets
        :data:`MODEL_DESCRIPTION`."""
        mlflow = self.activate()
        import mlflow.lightgbm  # noqa: F401

        signature = None
        if example is not None and len(example):
            from mlflow.models import infer_signature

            signature = infer_signature(example, booster.predict(example, raw_score=True))
        info = mlflow.lightgbm.log_model(
            booster, name="model", registered_model_name=self.model_name,
            pip_requirements=PIP_REQUIREMENTS, signature=signature,
            metadata=json.loads(json.dumps(metadata, default=_json_default)))
        version = str(info.registered_model_version)
        self.client.update_registered_model(self.model_name, description=MODEL_DESCRIPTION)
        return version

    def version_by_alias(self, alias: str):
        """The model version behind an alias, or None."""
        from mlflow.exceptions import MlflowException

        c = self.client
        try:
            return c.get_model_version_by_alias(self.model_name, alias)
        except MlflowException:
            return None

    def version_with_tag(self, key: str, value: str):
        """The newest registered version carrying tag ``key = value``, or None."""
        versions = self.client.search_model_versions(f"name = '{self.model_name}'")
        hits = [v for v in versions if (v.tags or {}).get(key) == value]
        return max(hits, key=lambda v: int(v.version)) if hits else None

    def load_version(self, version: str):
        """(booster, metadata) of a registered version, loaded through the registry."""
        mlflow = self.activate()
        import mlflow.lightgbm  # noqa: F401

        uri = f"models:/{self.model_name}/{version}"
        booster = mlflow.lightgbm.load_model(uri)
        info = mlflow.models.get_model_info(uri)
        return booster, dict(info.metadata or {})

    def load_alias(self, alias: str = CHAMPION):
        """(version, booster, metadata) behind an alias, or None when the alias is not set."""
        mv = self.version_by_alias(alias)
        if mv is None:
            return None
        booster, meta = self.load_version(mv.version)
        return str(mv.version), booster, meta

    def apply_decision(self, version: str, decision: GateDecision, run_id: str,
                       description: str = "") -> None:
        """Move the alias the decision names to ``version`` and log the decision everywhere
        (the version's description: ``description`` followed by the decision)."""
        c = self.client
        c.set_registered_model_alias(self.model_name, decision.alias, version)
        c.update_model_version(self.model_name, version, description=(
            f"{description} Gate: {decision.alias} — {decision.reason}".strip())[:5000])
        d = decision.to_dict()
        c.set_model_version_tag(self.model_name, version, "gate_decision", decision.alias)
        c.set_model_version_tag(self.model_name, version, "gate_reason", decision.reason[:5000])
        c.set_tag(run_id, "gate_decision", decision.alias)
        c.set_tag(run_id, "gate_reason", decision.reason[:5000])
        c.set_tag(run_id, "model_version", version)
        # yearly means, named so beside the headline list's nov_* figures
        for k, v in (("gate_candidate_year_mean_pr_auc", decision.candidate.pr_auc),
                     ("gate_candidate_year_mean_ece", decision.candidate.ece),
                     ("gate_bar_year_mean_pr_auc", decision.compared_with.pr_auc),
                     ("gate_bar_year_mean_ece", decision.compared_with.ece),
                     ("gate_promoted", float(decision.promoted))):
            if _finite(v):
                c.log_metric(run_id, k, float(v))
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "decision.json"
            p.write_text(json.dumps(d, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
            c.log_artifact(run_id, str(p), "gate")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (pd.Timestamp,)):
        return o.isoformat()
    return str(o)


# ---------------------------------------------------------------------------------------------
# Plots (artifacts)
# ---------------------------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def pr_curve_figure(y, score, title: str):
    from sklearn.metrics import precision_recall_curve

    plt = _plt()
    p, r, _ = precision_recall_curve(np.asarray(y), np.asarray(score))
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(r, p)
    ax.axhline(float(np.mean(y)), ls="--", c="grey", lw=1, label="base rate")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def calibration_figure(table: pd.DataFrame, title: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    top = max(float(table.mean_predicted.max()), float(table.observed_rate.max()), 0.01) * 1.05
    ax.plot([0, top], [0, top], ls="--", c="grey", lw=1)
    ax.plot(table.mean_predicted, table.observed_rate, marker="o")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed rate")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def importance_figure(imp: pd.DataFrame, column: str, title: str, top: int = 20):
    plt = _plt()
    t = imp.sort_values(column, ascending=False).head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(t) + 1))
    ax.barh(t.feature, t[column])
    ax.set_xlabel(column)
    ax.set_title(title)
    fig.tight_layout()
    return fig
