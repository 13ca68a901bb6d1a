"""Membership inference: can an attacker tell the model's training records from others?

SACRO-ML's "worst-case" attack in spirit: the attacker is given the model's outputs on the
real training records and on held-out records, with the answer, and trains a classifier to
tell them apart. If even that attacker cannot (area under the ROC curve near 0.5), releasing
the model discloses little about who was in the training data; a model that memorised its
records (an unpruned tree, an over-parameterised network) gives its members away by its
confidence on them.

Two attacks run on the same prediction vectors, and the stronger one is reported:
a logistic regression on features of each prediction (sorted class probabilities, their
entropy, and, when the label can be matched to a class, the probability of the true class
and its log loss), scored out of fold (5-fold cross-validation, so the attack is judged on
records it did not see), and a plain threshold on the loss (or on the top probability). The
two sets are balanced (the larger one subsampled, seeded) so 0.5 means chance. Reported: AUC,
membership advantage (the largest TPR - FPR), TPR at FPR 1 % and 10 %, and the AUC's p-value
against chance (normal approximation of the Mann-Whitney statistic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from egress_review.checks.model import Predictions

EPS = 1e-12
LOW_FPRS = (0.01, 0.1)


@dataclass
class AttackResult:
    """The stronger of the two attacks, and both AUCs for the record."""

    auc: float
    advantage: float
    tpr_at_fpr: dict[str, float]
    p_value: float
    attack: str
    members: int
    nonmembers: int
    aucs: dict[str, float] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "auc": round(self.auc, 4),
            "advantage": round(self.advantage, 4),
            "tpr_at_fpr": {k: round(v, 4) for k, v in self.tpr_at_fpr.items()},
            "p_value": float(f"{self.p_value:.3g}"),
            "attack": self.attack,
            "members": self.members,
            "nonmembers": self.nonmembers,
            "aucs": {k: round(v, 4) for k, v in self.aucs.items()},
            "features": self.features,
        }


def _true_class_index(labels: list[str], pred: Predictions) -> np.ndarray | None:
    """Column of each record's true class, or None when the labels cannot be matched."""
    k = pred.values.shape[1]
    names = pred.classes if len(pred.classes) == k else [str(i) for i in range(k)]
    lookup = {_norm_label(n): i for i, n in enumerate(names)}
    out = [lookup.get(_norm_label(label)) for label in labels]
    if any(i is None for i in out):
        return None
    return np.asarray(out, dtype=np.int64)


def _norm_label(label: str) -> str:
    try:
        number = float(label)
    except ValueError:
        return label.strip()
    return str(int(number)) if number.is_integer() else str(number)


def attack_features(pred: Predictions, labels: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features for the learned attack, score for the threshold attack, feature names)."""
    values = np.asarray(pred.values, dtype=np.float64)
    if pred.kind == "regression":
        y = np.asarray([_float(v) for v in labels])
        prediction = values[:, 0]
        if np.isfinite(y).all():
            error = np.abs(prediction - y)
            return (
                np.column_stack([prediction, error, error**2]),
                -error,
                ["prediction", "abs_error", "sq_error"],
            )
        return prediction[:, None], prediction, ["prediction"]
    probs = np.clip(values, 0.0, 1.0)
    ranked = -np.sort(-probs, axis=1)[:, : min(3, probs.shape[1])]
    entropy = -(probs * np.log(probs + EPS)).sum(axis=1)
    cols = [ranked, entropy[:, None]]
    names = [f"p_rank{i + 1}" for i in range(ranked.shape[1])] + ["entropy"]
    truth = _true_class_index(labels, pred)
    if truth is None:
        return np.column_stack(cols), ranked[:, 0], names
    p_true = probs[np.arange(len(probs)), truth]
    loss = -np.log(p_true + EPS)
    correct = (probs.argmax(axis=1) == truth).astype(np.float64)
    cols += [p_true[:, None], loss[:, None], correct[:, None]]
    return np.column_stack(cols), -loss, [*names, "p_true", "log_loss", "correct"]


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return math.nan


def _balanced(n_in: int, n_out: int, cap: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = min(n_in, n_out, cap)
    return np.sort(rng.choice(n_in, n, replace=False)), np.sort(rng.choice(n_out, n, replace=False))


def _curve_figures(y: np.ndarray, score: np.ndarray) -> tuple[float, float, dict[str, float]]:
    from sklearn.metrics import roc_auc_score, roc_curve  # see membership_attack

    auc = float(roc_auc_score(y, score))
    fpr, tpr, _ = roc_curve(y, score)
    advantage = float(np.max(tpr - fpr))
    at = {f"{f:g}": float(tpr[fpr <= f].max(initial=0.0)) for f in LOW_FPRS}
    return auc, advantage, at


def membership_attack(
    members: Predictions,
    member_labels: list[str],
    nonmembers: Predictions,
    nonmember_labels: list[str],
    *,
    max_records: int = 5000,
    seed: int = 0,
) -> AttackResult:
    """Run both attacks on balanced sets; ValueError when there are too few records to try."""
    rng = np.random.default_rng(seed)
    pick_in, pick_out = _balanced(len(members.values), len(nonmembers.values), max_records, rng)
    n = len(pick_in)
    if n < 10:
        raise ValueError("fewer than 10 records in one of the sets")
    f_in, s_in, names = attack_features(members, member_labels)
    f_out, s_out, names_out = attack_features(nonmembers, nonmember_labels)
    if names != names_out:  # labels matched in one set only: fall back to what both have
        keep = [i for i, name in enumerate(names) if name in names_out]
        f_in, names = f_in[:, keep], [names[i] for i in keep]
        f_out = f_out[:, [names_out.index(name) for name in names]]
    x = np.vstack([f_in[pick_in], f_out[pick_out]])
    y = np.concatenate([np.ones(n), np.zeros(n)])
    # Imported here, not with the module: scikit-learn (with scipy.stats) is a third of every
    # server's start-up CPU (`tre serve` imports the checks through the airlock's expiry
    # sweeper), and only a model release with a membership test needs it.
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    learner = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    learned = cross_val_predict(learner, x, y, cv=folds, method="predict_proba")[:, 1]
    threshold = np.concatenate([s_in[pick_in], s_out[pick_out]])
    figures = {
        "logistic regression on prediction features": _curve_figures(y, learned),
        "threshold on loss/confidence": _curve_figures(y, threshold),
    }
    attack, (auc, advantage, at) = max(figures.items(), key=lambda kv: kv[1][0])
    se = math.sqrt((2 * n + 1) / (12.0 * n * n))
    p_value = 0.5 * math.erfc(((auc - 0.5) / se) / math.sqrt(2))
    return AttackResult(
        auc=auc,
        advantage=advantage,
        tpr_at_fpr=at,
        p_value=p_value,
        attack=attack,
        members=n,
        nonmembers=n,
        aucs={k: v[0] for k, v in figures.items()},
        features=names,
    )
