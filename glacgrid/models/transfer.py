"""Transfer learning: fine-tune an ANN pretrained on a data-rich set on a small set.

The pretrained network, its feature schema and its normalisation statistics are kept (the small
set is standardised with the *pretraining* statistics, so the first layers see inputs on the scale
they were trained on). The first ``freeze`` hidden blocks (``Linear`` with its BatchNorm; an input
BatchNorm counts with the first block) are frozen: their weights get no gradient and their
BatchNorm running statistics are not updated. The rest is trained further on the small set with
early stopping on a seeded 15 % of it, usually with a smaller learning rate.
"""

from __future__ import annotations

import copy
import threading

import numpy as np

from ..exceptions import ModelError
from . import _kernels
from .ann import ANNModel, _torch
from .schema import FeatureSchema, check_training_data


def fine_tune(pretrained: ANNModel, X: np.ndarray, y: np.ndarray, schema: FeatureSchema, *, freeze: int = 0,
              lr: float | None = None, epochs: int | None = None, seed: int | None = None,
              sample_weight=None) -> ANNModel:
    """A copy of ``pretrained`` trained further on ``X``, ``y``.

    Parameters
    ----------
    pretrained : ANNModel
        A fitted ANN; it is not modified.
    X : ndarray, shape (n_samples, n_features)
        The small set's features in physical units, columns in ``schema`` order (>= 10 rows).
    y : ndarray, shape (n_samples,)
        The small set's target (same units as the pretraining target).
    schema : FeatureSchema
        Must equal the pretrained model's schema (else :class:`SchemaMismatchError`).
    freeze : int
        Number of leading hidden blocks to freeze, 0 .. number of hidden layers.
    lr, epochs, seed : optional
        Learning rate (default: a tenth of the pretraining one), maximum epochs and seed of the
        fine-tuning (default: the pretrained model's).
    sample_weight : ndarray, optional
        Weights of the fine-tuning loss.

    Returns
    -------
    ANNModel
        ``training_`` records ``fine_tuned``: the frozen block count and the small set's size.
    """
    torch = _torch()
    if not isinstance(pretrained, ANNModel) or pretrained.schema is None:
        raise ModelError(f"fine_tune needs a fitted ANNModel; got {pretrained!r}.")
    pretrained.schema.check(schema)
    if not 0 <= int(freeze) <= len(pretrained.hidden):
        raise ModelError(f"freeze must be between 0 and the {len(pretrained.hidden)} hidden layers; got {freeze}.")
    X, y, w = check_training_data(X, y, schema, sample_weight, min_samples=10)
    model = copy.copy(pretrained)
    model._nets, model._lock = {}, threading.Lock()
    model.seed = pretrained.seed if seed is None else int(seed)
    model.norm_, model.training_ = dict(pretrained.norm_), dict(pretrained.training_)
    dev = model._resolve_device()
    net = model._build(len(schema))
    net.load_state_dict(pretrained._state)
    net = net.to(dev)
    frozen = _frozen_modules(net, int(freeze))
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    frozen_bn = [m for m in frozen if isinstance(m, torch.nn.BatchNorm1d)]
    nm = model.norm_
    Z = _kernels.standardise(X, np.asarray(nm["x_mean"]), np.asarray(nm["x_std"]))
    tr_idx, val_idx = model._split(len(y))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(model.seed)
        best, best_epoch, epoch = model._train_net(
            net, Z, (y - nm["y_mean"]) / nm["y_std"], w, tr_idx, val_idx, dev,
            lr=pretrained.lr / 10 if lr is None else float(lr), epochs=epochs, frozen_eval=frozen_bn)
    for p in net.parameters():
        p.requires_grad_(True)
    model.training_["fine_tuned"] = {"freeze": int(freeze), "n_samples": int(len(y)), "epochs_run": epoch,
                                     "best_epoch": best_epoch, "best_val_loss": best,
                                     "target_mean": float(y.mean()), "target_std": float(y.std())}
    model._set_net(net, dev)
    return model


def _frozen_modules(net, freeze: int) -> list:
    """Modules of the first ``freeze`` hidden blocks (a block ends at its activation)."""
    nn = _torch().nn
    out, blocks = [], 0
    if freeze == 0:
        return out
    for m in net:
        if isinstance(m, nn.Linear):
            blocks += 1
            if blocks > freeze:
                break
        out.append(m)
    return out
