"""A small feed-forward neural-network SMB model (torch).

Features and target are standardised with statistics stored in the model; the network is
``Linear -> LeakyReLU`` per hidden layer and a linear output, trained with Adam on the (weighted)
MSE for at most ``epochs`` epochs, stopping early when the loss on a seeded 15 % validation split
has not improved for ``patience`` epochs (the best weights are kept). torch is imported lazily so
that importing :mod:`glacgrid.models` stays cheap for linear models.
"""

from __future__ import annotations

import hashlib
import math
import threading
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..exceptions import ModelError
from . import _kernels
from .schema import (
    ARTIFACT_FORMAT,
    MODEL_JSON,
    FeatureSchema,
    check_predict_input,
    check_training_data,
    read_model_json,
    software_versions,
    write_json_atomic,
)

WEIGHTS_FILE = "weights.pt"
DEVICES = ("auto", "cpu", "cuda")
VALIDATION_FRACTION = 0.15
#: Rows per forward pass in predict; bounds memory on large pixel blocks.
PREDICT_BATCH = 65_536
#: Each forward pass is zero-padded to a multiple of this many rows. BLAS kernels treat the last
#: rows of a call that is not a whole number of tiles differently, so without padding a pixel's
#: prediction would change (at float32 rounding) with the dask chunking.
PAD_ROWS = 64


def _torch():
    import torch

    return torch


class ANNModel:
    """Feed-forward regressor of SMB on standardised features.

    Parameters
    ----------
    hidden : tuple of int
        Width of each hidden layer.
    epochs : int
        Maximum number of training epochs.
    lr : float
        Adam learning rate.
    seed : int
        Seeds weight initialisation, the validation split and batch shuffling; on CPU two fits
        with the same seed and data give identical predictions (not guaranteed on CUDA).
    device : {"auto", "cpu", "cuda"}
        Where to fit and predict; ``"auto"`` uses CUDA when available. Resolved at each call.
    patience : int
        Epochs without improvement of the validation loss before stopping.
    batch_size : int
        Mini-batch size during training.
    """

    def __init__(self, hidden=(32, 16), epochs=500, lr=1e-2, seed=0, device="auto", patience=30, batch_size=256):
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ModelError(f"hidden must be a non-empty sequence of positive layer widths; got {hidden}.")
        if int(epochs) < 1 or int(patience) < 1 or int(batch_size) < 1:
            raise ModelError(f"epochs, patience and batch_size must be >= 1; got {epochs}, {patience}, {batch_size}.")
        if not (math.isfinite(lr) and lr > 0):
            raise ModelError(f"lr must be a positive number; got {lr}.")
        if device not in DEVICES:
            raise ModelError(f"device must be one of {DEVICES}; got {device!r}.")
        self.kind = "ann"
        self.hidden, self.epochs, self.lr = hidden, int(epochs), float(lr)
        self.seed, self.device, self.patience, self.batch_size = int(seed), device, int(patience), int(batch_size)
        self.schema: FeatureSchema | None = None
        self.norm_: dict = {}
        self.training_: dict = {}
        self._state: dict | None = None  # CPU state_dict of the trained network
        self._nets: dict = {}  # device -> network in eval mode, built lazily
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = self.schema.describe() if self.schema is not None else "unfitted"
        return f"ANNModel(hidden={self.hidden}, seed={self.seed}, device={self.device!r}; {state})"

    def __getstate__(self) -> dict:  # for dask distributed: ship weights, rebuild networks on arrival
        state = self.__dict__.copy()
        state["_nets"], state["_lock"] = {}, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def hyperparameters(self) -> dict:
        """The constructor arguments, JSON-ready."""
        return {"hidden": list(self.hidden), "epochs": self.epochs, "lr": self.lr, "seed": self.seed,
                "device": self.device, "patience": self.patience, "batch_size": self.batch_size}

    def _resolve_device(self) -> str:
        torch = _torch()
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ModelError("device='cuda' was requested but torch sees no CUDA device; use device='auto' or 'cpu'.")
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def _build(self, n_in: int):
        nn = _torch().nn
        layers, width = [], n_in
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        return nn.Sequential(*layers)

    def fit(self, X: np.ndarray, y: np.ndarray, schema: FeatureSchema, sample_weight=None) -> ANNModel:
        """Train on ``X`` (n_samples, n_features; physical units, schema order) and ``y`` (target units).

        Parameters
        ----------
        X : ndarray, shape (n_samples, n_features)
            Finite features, columns in ``schema`` order; at least 10 rows.
        y : ndarray, shape (n_samples,)
            Finite target (e.g. annual SMB in m w.e.).
        schema : FeatureSchema
            Names and units of the columns of ``X``.
        sample_weight : ndarray, shape (n_samples,), optional
            Non-negative weights of the MSE.

        Returns
        -------
        ANNModel
            ``self``, fitted.
        """
        torch = _torch()
        X, y, w = check_training_data(X, y, schema, sample_weight, min_samples=10)
        n = X.shape[0]
        x_mean, x_std = _kernels.column_stats(X)
        y_mean, y_std = float(y.mean()), float(y.std()) or 1.0
        dev = self._resolve_device()
        perm = np.random.default_rng(self.seed).permutation(n)
        n_val = max(1, int(round(VALIDATION_FRACTION * n)))
        val_idx, tr_idx = perm[:n_val], perm[n_val:]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = self._build(X.shape[1])
        net.to(dev)
        Xt = torch.from_numpy(_kernels.standardise(X, x_mean, x_std).astype(np.float32)).to(dev)
        yt = torch.from_numpy(((y - y_mean) / y_std).astype(np.float32)).to(dev)
        wt = torch.from_numpy((np.ones(n) if w is None else w / w.mean()).astype(np.float32)).to(dev)
        tr, va = torch.from_numpy(tr_idx).to(dev), torch.from_numpy(val_idx).to(dev)
        gen = torch.Generator().manual_seed(self.seed)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)

        def loss_of(idx):
            err = net(Xt[idx]).squeeze(1) - yt[idx]
            return (wt[idx] * err * err).sum() / wt[idx].sum().clamp_min(1e-12)

        best, best_epoch, best_state, wait, epoch = math.inf, 0, None, 0, 0
        for epoch in range(1, self.epochs + 1):
            net.train()
            order = tr[torch.randperm(len(tr_idx), generator=gen).to(dev)]
            for start in range(0, len(tr_idx), self.batch_size):
                opt.zero_grad()
                loss_of(order[start:start + self.batch_size]).backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                v = float(loss_of(va))
            if v < best:
                best, best_epoch, wait = v, epoch, 0
                best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
            else:
                wait += 1
                if wait >= self.patience:
                    break
        if best_state is None:
            raise ModelError("ANN training diverged (validation loss is NaN); lower lr or check the features.")
        net.load_state_dict(best_state)
        net.eval()
        self.schema = schema
        self.norm_ = {"x_mean": x_mean.tolist(), "x_std": x_std.tolist(), "y_mean": y_mean, "y_std": y_std}
        self.training_ = {"n_samples": n, "n_train": int(len(tr_idx)), "n_val": n_val, "epochs_run": epoch,
                          "best_epoch": best_epoch, "best_val_loss": best, "device": dev,
                          "target_mean": float(y.mean()), "target_std": float(y.std())}
        self._state = {k: t.detach().cpu().clone() for k, t in net.state_dict().items()}
        self._nets = {dev: net}
        return self

    def _net_for(self, dev: str):
        net = self._nets.get(dev)
        if net is None:
            with self._lock:
                net = self._nets.get(dev)
                if net is None:
                    net = self._build(len(self.schema))
                    net.load_state_dict(self._state)
                    net = net.to(dev).eval()
                    self._nets[dev] = net
        return net

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predict the target (target units, float64) for ``X`` (n_samples, n_features) in schema order.

        Rows holding NaN or inf give NaN. Runs in batches of :data:`PREDICT_BATCH` rows, padded
        to a multiple of :data:`PAD_ROWS`, under ``torch.inference_mode``; thread-safe (the model
        is not modified). On CPU a row's prediction does not depend on the other rows of ``X``
        (hence not on dask chunking); on CUDA it may differ from the CPU at float32 rounding.
        """
        X = check_predict_input(X, self.schema)
        out = np.full(X.shape[0], np.nan)
        ok = np.flatnonzero(_kernels.finite_rows(X))
        if ok.size == 0:
            return out
        torch = _torch()
        dev = self._resolve_device()
        net = self._net_for(dev)
        mean, std = np.asarray(self.norm_["x_mean"]), np.asarray(self.norm_["x_std"])
        with torch.inference_mode():
            for start in range(0, ok.size, PREDICT_BATCH):
                rows = ok[start:start + PREDICT_BATCH]
                z = np.zeros((-(-rows.size // PAD_ROWS) * PAD_ROWS, X.shape[1]), dtype=np.float32)
                z[:rows.size] = _kernels.standardise(X[rows], mean, std)
                pred = net(torch.from_numpy(z).to(dev)).squeeze(1).cpu().numpy()
                out[rows] = pred[:rows.size]
        out[ok] = out[ok] * self.norm_["y_std"] + self.norm_["y_mean"]
        return out

    def to_artifact(self, directory: str | Path) -> Path:
        """Write ``model.json`` and ``weights.pt`` (a plain tensor ``state_dict``) to ``directory``.

        Returns
        -------
        Path
            The artifact directory.
        """
        if self._state is None:
            raise ModelError("Cannot export an unfitted model: call fit() first.")
        torch = _torch()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            torch.save(self._state, tmp)
        digest = hashlib.sha256((directory / WEIGHTS_FILE).read_bytes()).hexdigest()
        write_json_atomic(directory / MODEL_JSON, {
            "format_version": ARTIFACT_FORMAT, "kind": self.kind, "hyperparameters": self.hyperparameters(),
            "schema": self.schema.to_dict(), "normalisation": self.norm_, "training": self.training_,
            "weights": {"file": WEIGHTS_FILE, "sha256": digest, "format": "torch state_dict"},
            "versions": software_versions("torch"),
        })
        return directory

    @classmethod
    def from_artifact(cls, directory: str | Path) -> ANNModel:
        """Load a model written by :meth:`to_artifact`; weights are read with ``weights_only=True``."""
        torch = _torch()
        directory = Path(directory)
        meta = read_model_json(directory, kinds=("ann",))
        try:
            model = cls(**meta["hyperparameters"])
        except TypeError as err:
            raise ModelError(f"{directory / MODEL_JSON}: bad hyperparameters ({err}); re-export the model.") from err
        model.schema = FeatureSchema.from_dict(meta["schema"])
        model.norm_ = dict(meta["normalisation"])
        model.training_ = dict(meta.get("training", {}))
        wpath = directory / meta["weights"]["file"]
        if not wpath.is_file():
            raise ModelError(f"Model weights {wpath} are missing; copy the whole artifact directory.")
        if hashlib.sha256(wpath.read_bytes()).hexdigest() != meta["weights"]["sha256"]:
            raise ModelError(f"{wpath} does not match the sha256 recorded in {directory / MODEL_JSON}; "
                             "the artifact was modified or mixed with another one. Re-export the model.")
        state = torch.load(wpath, map_location="cpu", weights_only=True)
        try:
            model._build(len(model.schema)).load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as err:
            raise ModelError(f"{wpath} does not fit the network described in {MODEL_JSON}: {err}") from err
        model._state = state
        return model
