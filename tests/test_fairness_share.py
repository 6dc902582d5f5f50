"""The rule on small categories by share (`exclude_below_share`, NYC LL144 rules 6 RCNY § 5-301(d)): a category
under the share is left out of the comparison, still listed with its count and selection rate."""

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, selection_rate

from audit.checks import all_checks
from audit.context import CheckContext
from audit.manifest import Manifest, ProtectedAttribute, TextRecipe


def share_ctx() -> CheckContext:
    rng = np.random.default_rng(5)
    n = 3000
    race = rng.choice(["a", "b", "c"], n, p=[0.6, 0.385, 0.015])
    y = (rng.random(n) < 0.6).astype(int)
    score = np.clip(0.3 * y + 0.7 * rng.random(n) - 0.3 * (race == "c"), 0, 1)
    frame = pd.DataFrame({"race": race, "text": "x", "label": "good"})
    m = Manifest(name="t", labels=["bad", "good"], positive_label="good", label_column="label",
                 text=TextRecipe(column="text"), protected_attributes={"race": ProtectedAttribute(column="race")})
    return CheckContext(y_true=y, score=score, replicates=100, seed=0, min_group_size=10, frame=frame, manifest=m)


def run(ctx, **params):
    spec = all_checks()["fairness.selection_rate_ratio"]
    return spec.fn(ctx, **{**spec.params, "attributes": ["race"], **params})


def fairlearn_ratio(ctx, keep):
    race = ctx.frame["race"].to_numpy()
    mask = np.isin(race, keep)
    mf = MetricFrame(metrics=selection_rate, y_true=ctx.y_true[mask], y_pred=ctx.y_pred[mask],
                     sensitive_features=race[mask])
    return mf.ratio(), mf.by_group


def test_a_category_under_the_share_is_left_out_and_still_listed():
    ctx = share_ctx()
    share_c = float((ctx.frame["race"] == "c").mean())
    assert share_c < 0.02 and (ctx.frame["race"] == "c").sum() >= 10  # large enough by rows, small by share
    every = run(ctx)
    want_all, _ = fairlearn_ratio(ctx, ["a", "b", "c"])
    assert every.value == pytest.approx(want_all)  # without the rule the small category is compared
    ruled = run(ctx, exclude_below_share=0.02)
    want, by_group = fairlearn_ratio(ctx, ["a", "b"])
    assert ruled.value == pytest.approx(want) and ruled.value > every.value
    assert ruled.inconclusive is None and not ruled.parts[0].incomplete  # an exclusion, not missing evidence
    (gone,) = ruled.details["excluded_by_share"]
    assert gone["group"] == "c" and gone["count"] == int((ctx.frame["race"] == "c").sum())
    assert gone["share"] == pytest.approx(share_c)
    _, all_groups = fairlearn_ratio(ctx, ["a", "b", "c"])
    assert gone["selection_rate"] == pytest.approx(all_groups["c"])
    row = next(g for g in ruled.details["attributes"][0]["groups"] if g["group"] == "c")
    assert row["judged"] is False and "exclude_below_share" in row["too_small"]
    assert any("left out of the comparison" in c for c in ruled.details["caveats"])


def test_share_rule_is_validated_at_policy_load(tmp_path):
    from audit.errors import PolicyError
    from audit.policy import load_policy

    p = tmp_path / "p.yaml"
    p.write_text("policy: t\nversion: '1'\nchecks:\n  fairness.selection_rate_ratio:\n    min: 0.8\n"
                 "    exclude_below_share: 2\n")
    with pytest.raises(PolicyError, match=r"p.yaml:\d+.*exclude_below_share must be a share"):
        load_policy(p)
