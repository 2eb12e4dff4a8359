"""Validation metrics the pilots report, computed from labels and predictions with numpy only
(no Keras): they stay comparable across trials whatever loss a trial trained with."""
from __future__ import annotations

import numpy as np


def macro_f1(truth, pred, n_classes: int) -> float:
    """Macro-averaged F1 over the classes present in truth or prediction (0.0 if none is)."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    f1s = []
    for c in range(n_classes):
        tp = int(np.sum((pred == c) & (truth == c)))
        fp = int(np.sum((pred == c) & (truth != c)))
        fn = int(np.sum((pred != c) & (truth == c)))
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def cross_entropy(truth, prob) -> float:
    """Mean categorical cross-entropy of integer labels under predicted class probabilities
    (rows are renormalised and clipped at 1e-7, as Keras does)."""
    p = np.clip(np.asarray(prob, dtype=np.float64), 1e-7, None)
    p = p / p.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(truth)), np.asarray(truth, dtype=int)])))


def roc_auc(truth, score) -> float | None:
    """Two-class ROC AUC of ``score`` for label 1 against label 0; None without both labels.

    The Mann-Whitney U statistic: the probability that a positive scores above a negative, ties
    counting half (O(positives x negatives) memory: meant for validation sets, not millions)."""
    truth, score = np.asarray(truth), np.asarray(score)
    pos, neg = score[truth == 1], score[truth == 0]
    if len(pos) == 0 or len(neg) == 0:
        return None
    gt = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(gt / (len(pos) * len(neg)))


__all__ = ["macro_f1", "cross_entropy", "roc_auc"]
