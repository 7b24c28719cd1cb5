"""Named ANN configurations from the glacier mass-balance literature.

``alpgm``
    After ALPGM (Bolibar et al. 2020, The Cryosphere 14, 565-584): input BatchNorm and Gaussian
    input noise, hidden layers (40, 20, 10, 5) each followed by BatchNorm, LeakyReLU(0.05) and
    dropout, RMSprop, MSE loss, early stopping on a validation split.
``point``
    For point (stake) mass balance, after the MassBalanceMachine / Norway point-MB networks: hidden
    layers (25, 30, 40, 20, 10) with BatchNorm and LeakyReLU, L1 (MAE) loss, Adadelta with learning
    rate 1 and mini-batches of 32, early stopping.

Values are keyword arguments of :class:`glacgrid.models.ANNModel`; explicit options given next to
a preset override the preset's values (e.g. fewer ``epochs`` in a quick test).
"""

from __future__ import annotations

from types import MappingProxyType

from ..exceptions import ModelError

ANN_PRESETS = MappingProxyType({
    "alpgm": MappingProxyType({
        "hidden": (40, 20, 10, 5), "input_batchnorm": True, "input_noise": 0.1, "batchnorm": True,
        "leaky_slope": 0.05, "dropout": 0.2, "optimizer": "rmsprop", "lr": 1e-3, "loss": "mse",
        "batch_size": 32, "epochs": 500, "patience": 30,
    }),
    "point": MappingProxyType({
        "hidden": (25, 30, 40, 20, 10), "batchnorm": True, "leaky_slope": 0.01, "dropout": 0.0,
        "optimizer": "adadelta", "lr": 1.0, "loss": "l1", "batch_size": 32, "epochs": 500, "patience": 30,
    }),
})


def preset_options(name: str) -> dict:
    """The keyword arguments of ANN preset ``name`` (a fresh dict)."""
    if name not in ANN_PRESETS:
        raise ModelError(f"Unknown ANN preset {name!r}; valid presets: {', '.join(ANN_PRESETS)}.")
    return dict(ANN_PRESETS[name])
