import numpy as np
import pytest

from dfx.engine import metrics as M

sk = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(y * 0.8, 1.0), 1)  # rounding makes ties, the hard case
    assert M.roc_auc(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    assert M.average_precision(y, s) == pytest.approx(sk.average_precision_score(y, s), abs=1e-12)
    fpr, tpr, thr = M.roc_curve(y, s)
    sfpr, stpr, sthr = sk.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sfpr)
    np.testing.assert_allclose(tpr, stpr)
    np.testing.assert_allclose(thr[1:], sthr[1:])
    tn, fp, fn, tp = sk.confusion_matrix(y, s >= 0.3).ravel()
    assert M.confusion(y, s, 0.3) == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    assert M.accuracy(y, s, 0.3) == pytest.approx(sk.accuracy_score(y, s >= 0.3))
    # EER: at the returned threshold FPR and FNR are as close as any threshold allows.
    eer, t = M.equal_error_rate(y, s)
    fnr = 1 - stpr
    best = np.min(np.abs(fnr[1:] - sfpr[1:]))
    pred = s >= t
    fpr_t, fnr_t = pred[y == 0].mean(), (~pred[y == 1]).mean()
    assert abs(fnr_t - fpr_t) == pytest.approx(best)
    assert eer == pytest.approx((fpr_t + fnr_t) / 2)
    ok = sfpr <= 0.01
    assert M.tpr_at_fpr(y, s, 0.01) == pytest.approx(stpr[ok].max())


def test_perfect_and_inverted_scores():
    y = np.array([0, 0, 1, 1])
    assert M.roc_auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert M.roc_auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert M.equal_error_rate(y, [0.1, 0.2, 0.8, 0.9])[0] == 0.0


def test_single_class_gives_nan_auc_and_bad_labels_raise():
    assert np.isnan(M.roc_auc([1, 1], [0.2, 0.3]))
    with pytest.raises(ValueError, match="0 \\(real\\) or 1"):
        M.roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="length"):
        M.roc_auc([0, 1], [0.1])
