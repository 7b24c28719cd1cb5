"""SMB models: fit on a feature table, validate, save as a safe artifact, apply to pixel arrays.

Typical use::

    schema = FeatureSchema(("cpdd", "snow_winter"), ("K day", "m w.e."))
    model = make_model("lasso", seed=0).fit(X, y, schema)      # or "ols", "svr", "rf", "gbm", "ann"
    model = make_model("ann", preset="alpgm", seed=0)           # literature presets: "alpgm", "point"
    model = make_model("ann", ensemble=5)                        # seeds (or bootstraps): mean and spread
    model.to_artifact("run/model")
    ...
    model = load_model("run/model", schema=schema)   # refuses other features, names the difference
    smb = model.predict(pixels)                        # (n_pixels, n_features) -> (n_pixels,)

:func:`cross_validate` scores a model kind with LOGO, LOYO, LSYGO, grouped k-fold or random
70/15/15 folds, optionally with sample weights (:func:`sample_weights`) and a nested search;
:func:`fine_tune` transfers a pretrained ANN to a small data set. Artifacts are JSON plus, for
SVR/forests, a numeric ``.npz`` and, for the ANN, a tensor-only ``state_dict``; nothing is unpickled.
"""

from __future__ import annotations

from ._kernels import regression_metrics
from .ann import ANNModel
from .cv import SCHEMES, CVResult, cross_validate
from .ensemble import ENSEMBLE_METHODS, EnsembleModel
from .factory import load_model, make_model
from .footprint import DEFAULT_KIND_WEIGHTS, FOOTPRINT_KINDS, Footprints, fit_footprints, footprint_weights
from .kinds import MODEL_KINDS, MONOTONE_KINDS
from ._kernels import linear_predict
from .linear import LinearModel
from .physics import FeatureViolations, PhysicsReport, check_physics, monotone_sign
from .presets import ANN_PRESETS
from .schema import FeatureSchema, SMBModel, predict_frame
from .sklearn_models import SklearnModel
from .transfer import fine_tune
from .weights import WEIGHTINGS, sample_weights

__all__ = [
    # one pixel model against many observation footprints (glacier-wide, bands, stakes)
    "DEFAULT_KIND_WEIGHTS", "FOOTPRINT_KINDS", "Footprints", "fit_footprints", "footprint_weights",
    "ANN_PRESETS",
    "ENSEMBLE_METHODS",
    "MODEL_KINDS",
    "MONOTONE_KINDS",
    "SCHEMES",
    "WEIGHTINGS",
    "ANNModel",
    "EnsembleModel",
    "SklearnModel",
    "fine_tune",
    "sample_weights",
    "CVResult",
    "FeatureSchema",
    "LinearModel",
    "linear_predict",  # the numpy kernel of LinearModel.predict (fused callers reproduce its order)
    "SMBModel",
    "check_physics",
    "cross_validate",
    "FeatureViolations",
    "monotone_sign",
    "PhysicsReport",
    "load_model",
    "make_model",
    "predict_frame",
    "regression_metrics",
]
