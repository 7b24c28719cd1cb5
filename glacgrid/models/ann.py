"""A feed-forward neural-network SMB model (torch) with configurable layers.

Features and target are standardised with statistics stored in the model. The network is an
optional input BatchNorm and Gaussian input noise, then per hidden layer ``Linear -> [BatchNorm]
-> LeakyReLU -> [Dropout]`` and a linear output. It is trained with Adam, RMSprop or Adadelta on
the (weighted) MSE or L1 loss for at most ``epochs`` epochs, stopping early when the loss on a
seeded 15 % validation split (or a validation set given to ``fit``) has not improved for
``patience`` epochs; the best weights are kept. Named configurations from the literature live in
:mod:`glacgrid.models.presets`. torch is imported lazily so that importing :mod:`glacgrid.models`
stays cheap for linear models.

Monotone networks (``monotone=True``)
    The SMB is non-increasing in every temperature / degree-day feature and non-decreasing in every
    snowfall / precipitation feature (the signs of :func:`glacgrid.models.physics.monotone_sign`) *by
    construction*, for any input: the first ``Linear`` uses ``sign_i * |w|`` as its weights on a
    constrained input ``i`` (free weights on the other inputs), every later ``Linear`` (and the output
    layer) uses ``|w|``, BatchNorm layers use ``|gamma|`` as their scale, and the activations, dropout
    and input noise are non-decreasing. A composition of non-decreasing maps with non-negative weights
    is non-decreasing, so each hidden unit, and the output, moves with ``sign_i * x_i``.
    Standardisation divides by a positive std and keeps the signs. Half of each hidden layer's units
    use LeakyReLU (convex), the other half its point reflection ``-LeakyReLU(-x)`` (concave), after
    Runje & Shankaranarayana (2023, "Constrained monotonic neural networks"): with LeakyReLU alone a
    monotone network is convex in each constrained input, and its SMB would flatten with more degree
    days. The price: the unconstrained features enter only through the first layer's free weights.

Threads
    Fitting and predicting run with ``threads`` torch intra-op threads (default 1: one per worker;
    several dask workers on a shared machine are faster with one each), restored afterwards. On CPU, a
    network without BatchNorm (the default) fits and predicts bit-identically with 1 and 2 threads
    (tested). With BatchNorm (presets ``alpgm``, ``point``) the batch statistics are reduced in a
    thread-count-dependent order, so training takes another path at float32 rounding and predictions
    differ slightly (0.005 m w.e. at most on the Otztal table); with the same thread count they are
    identical.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import threading
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, verified_bytes
from ..exceptions import ModelError
from . import _kernels
from ..metadata import software_versions
from .physics import required_signs
from .schema import (
    ARTIFACT_FORMAT,
    MODEL_JSON,
    FeatureSchema,
    check_predict_input,
    check_training_data,
    malformed_artifact,
    read_model_json,
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


OPTIMIZERS = ("adam", "rmsprop", "adadelta")
LOSSES = ("mse", "l1")


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch intra-op threads (``None``: leave torch's setting), then restore."""
    torch = _torch()
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.lru_cache(maxsize=1)
def _monotone_layers():
    """``(SignedLinear, PositiveBatchNorm)``: the torch modules of a monotone network (built once)."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional

    class SignedLinear(nn.Linear):
        """``Linear`` whose weight on input ``i`` is ``signs[i] * |w|`` (signs +1 / -1) or free (sign 0)."""

        def __init__(self, n_in, n_out, signs):
            super().__init__(n_in, n_out)
            self.register_buffer("signs", torch.as_tensor(signs, dtype=torch.float32).reshape(n_in))

        def forward(self, x):
            w = torch.where(self.signs == 0, self.weight, self.signs * self.weight.abs())
            return F.linear(x, w, self.bias)

    class ConvexConcaveLeakyReLU(nn.Module):
        """LeakyReLU on the first half of the units, its point reflection ``-LeakyReLU(-x)`` on the rest.

        Both are non-decreasing; with non-negative weights downstream, LeakyReLU units alone could only
        build functions convex in each constrained input, which flatten where SMB should keep falling.
        """

        def __init__(self, slope):
            super().__init__()
            self.slope = float(slope)

        def forward(self, x):
            convex = torch.arange(x.shape[1], device=x.device) < (x.shape[1] + 1) // 2
            return torch.where(convex, F.leaky_relu(x, self.slope), -F.leaky_relu(-x, self.slope))

    class PositiveBatchNorm(nn.BatchNorm1d):
        """``BatchNorm1d`` with scale ``|gamma|``: non-decreasing in each input."""

        def forward(self, x):
            if self.training:
                self.num_batches_tracked.add_(1)
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight.abs(), self.bias,
                                self.training, self.momentum, self.eps)

    return SignedLinear, PositiveBatchNorm, ConvexConcaveLeakyReLU


def _noise_module(sigma: float):
    """A torch module adding N(0, sigma²) noise to its input in training mode only."""
    nn = _torch().nn

    class GaussianNoise(nn.Module):
        def __init__(self, sigma):
            super().__init__()
            self.sigma = float(sigma)

        def forward(self, x):
            return x + self.sigma * _torch().randn_like(x) if self.training else x

    return GaussianNoise(sigma)


class ANNModel:
    """Feed-forward regressor of SMB on standardised features.

    Parameters
    ----------
    hidden : tuple of int
        Width of each hidden layer.
    epochs : int
        Maximum number of training epochs.
    lr : float
        Learning rate of the optimiser.
    seed : int
        Seeds weight initialisation, the validation split, batch shuffling, dropout and input
        noise; on CPU two fits with the same seed and data give identical predictions (not
        guaranteed on CUDA).
    device : {"auto", "cpu", "cuda"}
        Where to fit and predict; ``"auto"`` uses CUDA when available. Resolved at each call.
    patience : int
        Epochs without improvement of the validation loss before stopping.
    batch_size : int
        Mini-batch size during training.
    batchnorm : bool
        BatchNorm after each hidden ``Linear``.
    input_batchnorm : bool
        BatchNorm on the (standardised) inputs.
    input_noise : float
        Standard deviation of Gaussian noise added to the standardised inputs while training.
    dropout : float
        Dropout probability after each hidden activation, in [0, 1).
    leaky_slope : float
        Negative slope of the LeakyReLU activations.
    optimizer : {"adam", "rmsprop", "adadelta"}
    loss : {"mse", "l1"}
        Training and early-stopping loss on the standardised target, weighted by ``sample_weight``.
    preset : str, optional
        Name of the preset the options came from (a label recorded in the artifact; use
        ``make_model("ann", preset=...)`` to apply one).
    monotone : bool
        Constrain the network to be monotone in the temperature / degree-day (non-increasing) and
        snowfall / precipitation (non-decreasing) features by construction (see the module docstring).
        Needs at least one such feature and ``leaky_slope >= 0``.
    threads : int, optional
        torch intra-op threads while fitting and predicting (default 1); ``None`` leaves torch's setting.
    """

    def __init__(self, hidden=(32, 16), epochs=500, lr=1e-2, seed=0, device="auto", patience=30, batch_size=256,
                 batchnorm=False, input_batchnorm=False, input_noise=0.0, dropout=0.0, leaky_slope=0.01,
                 optimizer="adam", loss="mse", preset=None, monotone=False, threads=1):
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ModelError(f"hidden must be a non-empty sequence of positive layer widths; got {hidden}.")
        if int(epochs) < 1 or int(patience) < 1 or int(batch_size) < 1:
            raise ModelError(f"epochs, patience and batch_size must be >= 1; got {epochs}, {patience}, {batch_size}.")
        if not (math.isfinite(lr) and lr > 0):
            raise ModelError(f"lr must be a positive number; got {lr}.")
        if device not in DEVICES:
            raise ModelError(f"device must be one of {DEVICES}; got {device!r}.")
        if not (0 <= dropout < 1) or not (math.isfinite(input_noise) and input_noise >= 0):
            raise ModelError(f"dropout must be in [0, 1) and input_noise >= 0; got {dropout}, {input_noise}.")
        if optimizer not in OPTIMIZERS or loss not in LOSSES:
            raise ModelError(f"optimizer must be one of {OPTIMIZERS} and loss one of {LOSSES}; "
                             f"got {optimizer!r}, {loss!r}.")
        if threads is not None and int(threads) < 1:
            raise ModelError(f"threads must be >= 1 (or None to leave torch's setting); got {threads}.")
        if monotone and leaky_slope < 0:
            raise ModelError(f"monotone=True needs a non-decreasing activation (leaky_slope >= 0); got {leaky_slope}.")
        self.kind = "ann"
        self.monotone, self.threads = bool(monotone), None if threads is None else int(threads)
        self.hidden, self.epochs, self.lr = hidden, int(epochs), float(lr)
        self.seed, self.device, self.patience, self.batch_size = int(seed), device, int(patience), int(batch_size)
        self.batchnorm, self.input_batchnorm = bool(batchnorm), bool(input_batchnorm)
        self.input_noise, self.dropout, self.leaky_slope = float(input_noise), float(dropout), float(leaky_slope)
        self.optimizer, self.loss, self.preset = optimizer, loss, preset
        self.schema: FeatureSchema | None = None
        self.norm_: dict = {}
        self.training_: dict = {}
        self._state: dict | None = None  # CPU state_dict of the trained network
        self._nets: dict = {}  # device -> network in eval mode, built lazily
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = self.schema.describe() if self.schema is not None else "unfitted"
        label = f"preset={self.preset!r}, " if self.preset else ""
        return f"ANNModel({label}hidden={self.hidden}, seed={self.seed}, device={self.device!r}; {state})"

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
                "device": self.device, "patience": self.patience, "batch_size": self.batch_size,
                "batchnorm": self.batchnorm, "input_batchnorm": self.input_batchnorm,
                "input_noise": self.input_noise, "dropout": self.dropout, "leaky_slope": self.leaky_slope,
                "optimizer": self.optimizer, "loss": self.loss, "preset": self.preset,
                "monotone": self.monotone, "threads": self.threads}

    def _resolve_device(self) -> str:
        torch = _torch()
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ModelError("device='cuda' was requested but torch sees no CUDA device; use device='auto' or 'cpu'.")
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def _build(self, n_in: int, signs=None):
        """The network: ``[BatchNorm] [noise] (Linear [BatchNorm] LeakyReLU [Dropout])* Linear``.

        With ``monotone``, the sign-constrained layers (module docstring); ``signs`` (one per input) are
        then a buffer of the first layer, stored in the state dict (zeros until a state is loaded).
        """
        nn = _torch().nn
        if self.monotone:
            signed, norm, act = _monotone_layers()
            first = [0.0] * n_in if signs is None else [float(s) for s in signs]

            def linear(a, b):
                return signed(a, b, first if not layers_linear else [1.0] * a)
        else:
            norm, act = nn.BatchNorm1d, nn.LeakyReLU

            def linear(a, b):
                return nn.Linear(a, b)
        layers, width, layers_linear = [], n_in, []
        if self.input_batchnorm:
            layers.append(norm(n_in))
        if self.input_noise > 0:
            layers.append(_noise_module(self.input_noise))
        for h in self.hidden:
            layers.append(linear(width, h))
            layers_linear.append(layers[-1])
            if self.batchnorm:
                layers.append(norm(h))
            layers.append(act(self.leaky_slope))
            if self.dropout > 0:
                layers.append(nn.Dropout(self.dropout))
            width = h
        layers.append(linear(width, 1))
        return nn.Sequential(*layers)

    def _optimiser(self, params, lr: float):
        optim = _torch().optim
        cls = {"adam": optim.Adam, "rmsprop": optim.RMSprop, "adadelta": optim.Adadelta}[self.optimizer]
        return cls(params, lr=lr)

    def _train_net(self, net, Z, yz, w, tr_idx, val_idx, dev, *, lr=None, epochs=None, frozen_eval=()):
        """Train ``net`` in place on standardised arrays; keep the weights of the best validation loss.

        ``frozen_eval`` are modules kept in eval mode (frozen BatchNorm layers of fine-tuning).
        Returns ``(best_val_loss, best_epoch, epochs_run)``.
        """
        torch = _torch()
        Xt = torch.from_numpy(Z.astype(np.float32)).to(dev)
        yt = torch.from_numpy(yz.astype(np.float32)).to(dev)
        wt = torch.from_numpy((np.ones(len(yz)) if w is None else w / w.mean()).astype(np.float32)).to(dev)
        tr, va = torch.from_numpy(tr_idx).to(dev), torch.from_numpy(val_idx).to(dev)
        gen = torch.Generator().manual_seed(self.seed)
        params = [p for p in net.parameters() if p.requires_grad]
        opt = self._optimiser(params, self.lr if lr is None else lr)
        has_bn = any(isinstance(m, torch.nn.BatchNorm1d) for m in net.modules())

        def loss_of(idx):
            err = net(Xt[idx]).squeeze(1) - yt[idx]
            per = err * err if self.loss == "mse" else err.abs()
            return (wt[idx] * per).sum() / wt[idx].sum().clamp_min(1e-12)

        best, best_epoch, best_state, wait, epoch = math.inf, 0, None, 0, 0
        for epoch in range(1, (self.epochs if epochs is None else epochs) + 1):
            net.train()
            for m in frozen_eval:
                m.eval()
            order = tr[torch.randperm(len(tr_idx), generator=gen).to(dev)]
            for start in range(0, len(tr_idx), self.batch_size):
                batch = order[start:start + self.batch_size]
                if has_bn and len(batch) < 2:  # BatchNorm cannot train on one sample
                    continue
                opt.zero_grad()
                loss_of(batch).backward()
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
        return best, best_epoch, epoch

    def _split(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        perm = np.random.default_rng(self.seed).permutation(n)
        n_val = max(1, int(round(VALIDATION_FRACTION * n)))
        return perm[n_val:], perm[:n_val]

    def fit(self, X: np.ndarray, y: np.ndarray, schema: FeatureSchema, sample_weight=None,
            validation: tuple[np.ndarray, np.ndarray] | None = None) -> ANNModel:
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
            Non-negative weights of the loss.
        validation : (X_val, y_val), optional
            Early-stopping set; without it a seeded 15 % of ``X`` is held out for early stopping.

        Returns
        -------
        ANNModel
            ``self``, fitted.
        """
        torch = _torch()
        X, y, w = check_training_data(X, y, schema, sample_weight, min_samples=10)
        n_fit = X.shape[0]
        x_mean, x_std = _kernels.column_stats(X)
        y_mean, y_std = float(y.mean()), float(y.std()) or 1.0
        if validation is None:
            tr_idx, val_idx = self._split(n_fit)
        else:
            Xv, yv, _ = check_training_data(validation[0], validation[1], schema, None, min_samples=1)
            X, y = np.vstack([X, Xv]), np.concatenate([y, yv])
            w = None if w is None else np.concatenate([w, np.full(len(yv), w.mean())])
            tr_idx, val_idx = np.arange(n_fit), np.arange(n_fit, X.shape[0])
        signs = None
        if self.monotone:
            signs = required_signs(schema.names)
        dev = self._resolve_device()
        with torch.random.fork_rng(devices=[]), torch_threads(self.threads):
            torch.manual_seed(self.seed)
            net = self._build(X.shape[1], signs).to(dev)
            best, best_epoch, epoch = self._train_net(
                net, _kernels.standardise(X, x_mean, x_std), (y - y_mean) / y_std, w, tr_idx, val_idx, dev)
        self.schema = schema
        self.norm_ = {"x_mean": x_mean.tolist(), "x_std": x_std.tolist(), "y_mean": y_mean, "y_std": y_std}
        self.training_ = {"n_samples": n_fit, "n_train": int(len(tr_idx)), "n_val": int(len(val_idx)),
                          "epochs_run": epoch, "best_epoch": best_epoch, "best_val_loss": best, "device": dev,
                          "target_mean": y_mean, "target_std": float(y[:n_fit].std()),
                          "weighted": w is not None,
                          **({"monotone_signs": list(signs)} if signs is not None else {})}
        self._set_net(net, dev)
        return self

    def _set_net(self, net, dev: str) -> None:
        self._state = {k: t.detach().cpu().clone() for k, t in net.state_dict().items()}
        self._nets = {dev: net}

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

    def _forward_standardised(self, X: np.ndarray, dev: str) -> np.ndarray:
        """Network output (standardised target, float32) for rows of finite ``X`` (physical units).

        Rows are standardised batch by batch in float64 ((x - mean) / std, as :func:`_kernels.standardise`)
        straight into one reused float32 buffer, zero-padded to a multiple of :data:`PAD_ROWS`.
        """
        mean, std = np.asarray(self.norm_["x_mean"]), np.asarray(self.norm_["x_std"])
        n_rows, n_feat = X.shape
        out = np.empty(n_rows, dtype=np.float32)
        z = np.zeros((min(PREDICT_BATCH, -(-n_rows // PAD_ROWS) * PAD_ROWS), n_feat), dtype=np.float32)
        w = np.empty((min(PREDICT_BATCH, n_rows), n_feat))
        for start in range(0, n_rows, PREDICT_BATCH):
            n = min(PREDICT_BATCH, n_rows - start)
            m = -(-n // PAD_ROWS) * PAD_ROWS
            np.subtract(X[start:start + n], mean, out=w[:n])
            np.divide(w[:n], std, out=z[:n], casting="same_kind")
            if m > n:
                z[n:m] = 0.0
            out[start:start + n] = self._forward(z[:m], dev)[:n]
        return out

    def _forward(self, z: np.ndarray, dev: str) -> np.ndarray:
        """The network on standardised float32 rows, batch by batch (``len(z)`` a multiple of
        :data:`PAD_ROWS` unless it is one partial batch): float32 output, one value per row."""
        torch = _torch()
        net = self._net_for(dev)
        out = np.empty(z.shape[0], dtype=np.float32)
        with torch.inference_mode(), torch_threads(self.threads):
            for start in range(0, z.shape[0], PREDICT_BATCH):
                stop = min(start + PREDICT_BATCH, z.shape[0])
                out[start:stop] = net(torch.from_numpy(z[start:stop]).to(dev)).squeeze(1).cpu().numpy()
        return out

    def _predict_standardised(self, Z: np.ndarray) -> np.ndarray:
        """Target (float64) for rows already standardised in float32 exactly as :meth:`predict` does it
        (finite; ``len(Z)`` a multiple of :data:`PAD_ROWS`, so no padded copy is made). Used by batched
        inference, which writes the standardised features directly."""
        Z = np.ascontiguousarray(Z, dtype=np.float32)
        if Z.shape[0] % PAD_ROWS:
            padded = np.zeros((-(-Z.shape[0] // PAD_ROWS) * PAD_ROWS, Z.shape[1]), dtype=np.float32)
            padded[:Z.shape[0]] = Z
            pred = self._forward(padded, self._resolve_device())[:Z.shape[0]]
        else:
            pred = self._forward(Z, self._resolve_device())
        return pred.astype(np.float64) * self.norm_["y_std"] + self.norm_["y_mean"]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predict the target (target units, float64) for ``X`` (n_samples, n_features) in schema order.

        Rows holding NaN or inf give NaN. Rows are standardised in float64 batch by batch straight
        into one reused float32 buffer (no other copy) and run in batches of :data:`PREDICT_BATCH`
        rows, the last one padded to a multiple of :data:`PAD_ROWS`, under ``torch.inference_mode``;
        thread-safe (the model is not modified). On CPU a row's prediction does not depend on the
        other rows of ``X`` (hence not on dask chunking); on CUDA it may differ from the CPU at
        float32 rounding.
        """
        X = check_predict_input(X, self.schema)
        out = np.full(X.shape[0], np.nan)
        fin = _kernels.finite_rows(X)
        if not fin.any():
            return out
        every = bool(fin.all())  # no NaN rows: no gathered copy
        pred = self._forward_standardised(X if every else X[fin], self._resolve_device())
        res = pred.astype(np.float64) * self.norm_["y_std"] + self.norm_["y_mean"]
        if every:
            return res
        out[fin] = res
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
        with malformed_artifact(directory / MODEL_JSON):
            try:
                model = cls(**meta["hyperparameters"])
            except TypeError as err:
                raise ModelError(f"{directory / MODEL_JSON}: bad hyperparameters ({err}); re-export the model.") from err
            model.schema = FeatureSchema.from_dict(meta["schema"])
            norm = meta["normalisation"]
            sizes = {"x_mean": (len(model.schema),), "x_std": (len(model.schema),), "y_mean": (), "y_std": ()}
            if any(np.shape(norm[k]) != n or not np.isfinite(np.asarray(norm[k], dtype=np.float64)).all()
                   for k, n in sizes.items()):
                raise ModelError(f"{directory / MODEL_JSON}: normalisation must hold {len(model.schema)} finite "
                                 "x_mean and x_std values and finite y_mean and y_std; re-export the model.")
            model.norm_ = dict(norm)
            model.training_ = dict(meta.get("training", {}))
            wpath = directory / str(meta["weights"]["file"])
            digest = meta["weights"]["sha256"]
        verified_bytes(wpath, digest, directory / MODEL_JSON, what="weights")
        try:
            state = torch.load(wpath, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle.UnpicklingError (a refused object), RuntimeError (not a torch zip), ...
            raise ModelError(
                f"Refusing to load {wpath}: {_first_line(err)}. This file is not a glacgrid artifact or was written "
                "by an untrusted tool: glacgrid weights are plain tensors, and torch.load(weights_only=True) "
                "refuses anything else (no code is run). Re-export the model with glacgrid (model.to_artifact)."
            ) from err
        try:
            model._build(len(model.schema)).load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError, ValueError) as err:
            raise ModelError(f"{wpath} does not fit the network described in {MODEL_JSON}: {_first_line(err)}. "
                             "Re-export the model.") from err
        model._state = state
        return model


def _first_line(err: Exception) -> str:
    """``Type: the line of the message that says what is wrong`` (torch's messages run over many lines, and
    the first line of a refused pickle advises ``weights_only=False``: the line naming the refused global
    is given instead)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    named = [ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln]
    text = (named or lines or [""])[0]
    return f"{type(err).__name__}: {text}".rstrip(": .")
