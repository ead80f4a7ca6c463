"""Source groups, Japanese reasons, bands, ranks, the fairness audit and the ablation table."""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from ml import explain as X
from ml import fairness as F
from ml import scoring as S
from ml.ablation import bootstrap_table
from ml.feature_groups import BY_KEY, GROUPS, columns_by_group, group_of


@pytest.fixture(scope="module")
def real_feature_columns() -> list[str]:
    """The columns the real feature SQL produces (on an empty warehouse: no data needed)."""
    from ml.asof import AsOf
    from ml.dataset import model_feature_columns
    from ml.features import compute
    from toda_platform.catalogue import CATALOGUE
    from toda_platform.ingest import ensure_table

    con = duckdb.connect()
    for spec in CATALOGUE.values():
        ensure_table(con, spec)
    compute(con, AsOf(date(2024, 11, 1), "month_start"))
    con.execute("CREATE SCHEMA marts; CREATE TABLE marts.pupil_features AS SELECT * FROM _features")
    cols = model_feature_columns(con)
    con.close()
    return cols


def test_every_feature_column_has_a_source_group_and_a_japanese_label(real_feature_columns):
    from ml.features import BLOCKS

    assert len(real_feature_columns) > 200 and "grade" in real_feature_columns
    groups = columns_by_group(real_feature_columns)
    # every feature block of ml.features is a group, and every group has columns
    assert set(groups) == set(BLOCKS) == {g.key for g in GROUPS}
    unlabelled = [c for c in real_feature_columns if not X.label_ja(c)[2]]
    assert unlabelled == []


def test_group_of_and_unknown_columns():
    assert group_of("att_d30_absent") == "attendance"
    assert group_of("mood_d30_response_rate") == "mood"
    assert group_of("grade") == "registry"
    with pytest.raises(KeyError):
        group_of("zz_unknown")
    assert BY_KEY["aigrow"].prefix == "aig"


def test_reason_texts_a_teacher_can_read():
    assert X.reason_text("att_d30_absent", 5.0, 5 / 3, flag=False) == "直近30日の欠席 5日（学年平均の約3倍）"
    assert X.reason_text("att_d30_absent", 3.0, 2.0, flag=False) == "直近30日の欠席 3日（学年平均の約1.5倍）"
    assert X.reason_text("mood_d30_mood_mean", 2.25, 3.8, flag=False) == \
        "直近30日の気分の平均（5段階） 2.2（学年平均 3.8）"
    assert X.reason_text("att_ytd_absent_rate", 0.2, 0.04, flag=False) == \
        "今年度の欠席率 20%（学年平均の約5倍）"
    assert X.reason_text("la_prev_futoukou", 1.0, 0.02, flag=True) == "昨年度 不登校として計上（学年で2%）"
    # a mean near zero: the mean, not "122 times" it
    assert X.reason_text("att_d30_absent_other", 13.0, 0.34, flag=False) == \
        "直近30日の病気以外の欠席 13日（学年平均 0.3日）"
    assert X.reason_text("cns_d30_sessions", 2.0, 0.023, flag=False) == "直近30日の教育相談 2回（学年平均 0.02回）"
    assert X.reason_text("qu_approval", None, 20.0, flag=False) == "Q-U承認得点: 記録なし"


def test_explain_picks_the_largest_positive_contributions_without_repeating_a_measure():
    feats = ["att_d30_absent", "att_d90_absent", "nrs_d90_headache", "mood_d30_mood_mean",
             "aig_creativity", "la_prev_futoukou"]
    frame = pd.DataFrame({"grade": [5, 5, 5], "att_d30_absent": [6.0, 0, 0],
                          "att_d90_absent": [9.0, 1, 2], "nrs_d90_headache": [4.0, 0, 1],
                          "mood_d30_mood_mean": [2.0, 4, 4], "aig_creativity": [50.0, 50, 50],
                          "la_prev_futoukou": [0.0, 0, 1]})
    contrib = np.zeros((3, len(feats) + 1))
    contrib[0, :6] = [1.2, 0.9, 0.5, 0.3, -0.4, 0.01]
    reasons = X.explain(contrib, frame, feats)
    r0 = [r.feature for r in reasons[0]]
    # att_d90_absent repeats the measure of att_d30_absent; negative and tiny ones are not reasons
    assert r0 == ["att_d30_absent", "nrs_d90_headache", "mood_d30_mood_mean"]
    assert reasons[0][0].text == "直近30日の欠席 6日（学年平均の約3倍）"
    assert reasons[1] == [] and reasons[2] == []


def test_band_thresholds_meet_their_held_out_precision():
    # scores 1.00 .. 0.01; the top 10 are all positive, the next 10 half, then none
    p = np.linspace(1, 0.01, 100)
    y = np.r_[np.ones(10), np.tile([1, 0], 5), np.zeros(80)]
    t = S.choose_band_thresholds(y, p, targets=(("赤", 0.9), ("黄", 0.5), ("x", 0.99)), min_listed=5)
    # 赤: the largest top list with precision >= 0.9 is the top 13 (12 of 13; 12 of 14 is less)
    assert t["赤"] == pytest.approx(p[12])
    # 黄: top 30 has 15/30 = 0.5
    assert t["黄"] == pytest.approx(p[29])
    assert t["x"] == pytest.approx(p[10])  # 11/11
    bands = S.assign_bands(p, t, targets=(("赤", 0.9), ("黄", 0.5)))
    assert list(bands[:13]) == ["赤"] * 13 and bands[13] == "黄" and bands[29] == "黄"
    assert bands[30] is None
    table = S.band_precision(y, p, t, targets=(("赤", 0.9), ("黄", 0.5)))
    assert (table.precision >= table.target_precision).all()
    assert S.choose_band_thresholds(np.zeros(50), np.linspace(1, 0, 50))["赤"] is None


def test_rank_in_school_starts_at_one_per_school():
    f = pd.DataFrame({"school_code": ["A", "B", "A", "A", "B"], "pupil_id": list("vwxyz")})
    assert list(S.rank_in_school(f, [0.1, 0.5, 0.9, 0.1, 0.7])) == [2, 2, 1, 3, 1]


def test_fairness_audit_by_hand():
    # 40 pupils: 20 boys (4 positive), 20 girls (4 positive); top 5% = 2 listed, both boys
    n = 40
    frame = pd.DataFrame({"reg_female": [0.0] * 20 + [1.0] * 20,
                          "grade": 5, "school_code": ["S1", "S2"] * 20,
                          "ctx_school_aid_rate": [0.1, 0.3] * 20,
                          "label": [1.0] * 4 + [0.0] * 16 + [1.0] * 4 + [0.0] * 16})
    score = np.linspace(1, 0, n)
    t = F.audit(frame, score)
    sex = t[t.attribute == "sex"].set_index("group")
    assert sex.loc["男子", "flag_rate"] == pytest.approx(2 / 20)
    assert sex.loc["女子", "flag_rate"] == 0.0
    assert sex.loc["男子", "precision"] == 1.0 and sex.loc["男子", "recall"] == pytest.approx(0.5)
    assert sex.loc["男子", "fpr"] == 0.0
    # the largest group is the reference; ties by name: 女子 < 男子 in code points
    assert set(sex.reference) == {"女子"}
    # nobody listed in the reference group and someone here: outside the band
    assert np.isinf(sex.loc["男子", "flag_rate_ratio"])
    assert "flag_rate" in sex.loc["男子", "outside_band"]
    assert len(F.flagged(t)) >= 1
    bands = t[t.attribute == "context_band"]
    assert set(bands.group) <= {"低", "中", "高", "不明"}


def test_bootstrap_intervals_cover_a_real_loss_and_not_a_null_change():
    rng = np.random.default_rng(0)
    n = 1000
    y = (rng.random(n) < 0.15).astype(float)
    strong = y * 2 + rng.normal(0, 1, n)
    weak = y * 0.5 + rng.normal(0, 1, n)
    same = strong + rng.normal(0, 1e-6, n)
    schools = np.arange(n) % 10
    t = bootstrap_table(y, schools, {"full": strong, "weak": weak, "same": same}, "full",
                        n_boot=60, metrics=("roc_auc", "pr_auc"))
    weak_auc = t[(t.variant == "weak") & (t.metric == "roc_auc")].iloc[0]
    assert weak_auc.delta < 0 and weak_auc.delta_high < 0
    same_auc = t[(t.variant == "same") & (t.metric == "roc_auc")].iloc[0]
    assert same_auc.delta_low <= 0 <= same_auc.delta_high or abs(same_auc.delta) < 1e-3
    full = t[(t.variant == "full") & (t.metric == "roc_auc")].iloc[0]
    assert full.delta == 0 and full.value_low < full.value < full.value_high


def test_resampled_pupils_keep_all_their_rows():
    from ml.ablation import resample_pupils

    f = pd.DataFrame({"pupil_id": ["a", "a", "b", "c", "c", "c"], "v": range(6)})
    r = resample_pupils(f, np.random.default_rng(3))
    counts = f.pupil_id.value_counts()
    drawn = r.groupby("pupil_id").size()
    # a pupil drawn k times brings all their rows k times
    assert all(drawn[p] % counts[p] == 0 for p in drawn.index)
    assert r.pupil_id.nunique() <= 3 and len(r) == sum(drawn)


def test_the_ablation_finds_the_source_that_determines_the_label_and_measures_refit_noise():
    from ml import evaluation as E
    from ml.ablation import AblationConfig, refit_noise, run_ablation
    from tests.ml_frames import FEATURES, make_frame

    frame = make_frame(pupils=300, years=(2021, 2022, 2023), seed=4)
    fold = E.temporal_folds(E.completed_years(frame), 1)[-1]
    feats = [c for c in FEATURES if c in frame.columns]
    r = run_ablation(frame, fold, feats, AblationConfig(train_months=None, lgb_rounds=40,
                                                       early_stopping=10, n_boot=30, refits=2,
                                                       groups=("attendance", "mood")),
                     log=lambda *_: None)
    assert set(r.refit_sd) == {"roc_auc", "pr_auc", "precision_top", "precision_school"}
    assert all(np.isfinite(v) and 0 <= v < 0.1 for v in r.refit_sd.values())
    # the label is a threshold of this year's absences: only attendance is needed
    assert r.needed("pr_auc") == ["attendance"]
    w = r.wide("pr_auc")
    assert (w.refit_sd == r.refit_sd["pr_auc"]).all()
    assert not w[w.kind != "leave_one_out"].needed.any()  # "needed" speaks of leaving a source out
    # the noise of identical fits is zero; of two different scorers it is not
    y = np.array([0, 1, 0, 1, 1, 0, 0, 1], dtype=float)
    s = np.linspace(0, 1, 8)
    schools = np.zeros(8)
    assert refit_noise(y, schools, [s, s.copy()])["roc_auc"] == 0
    assert refit_noise(y, schools, [s, s[::-1]])["roc_auc"] > 0
