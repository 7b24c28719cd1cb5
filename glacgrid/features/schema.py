"""The feature schema: names, units and order of the features a model is trained on and applied to.

:class:`FeatureSchema` is built from a feature Dataset (:func:`glacgrid.features.feature_schema`), stored
with the features and with every model artifact; :meth:`FeatureSchema.check` refuses data whose
features differ, naming the difference. It lives with the features so that the features stage does
not depend on the models stage; :mod:`glacgrid.models` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..exceptions import ModelError, SchemaMismatchError

__all__ = ["FeatureSchema"]


@dataclass(frozen=True)
class FeatureSchema:
    """Names and units of a model's features, in column order.

    Parameters
    ----------
    names : tuple of str
        Feature names, unique, in the column order of ``X``.
    units : tuple of str
        Units of each feature (e.g. ``"K day"``, ``"m w.e."``), same length as ``names``.
        Compared as exact strings (after stripping blanks).
    """

    names: tuple[str, ...]
    units: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.names, str) or isinstance(self.units, str):
            raise ModelError("FeatureSchema names and units must be sequences of strings, not one string.")
        names = tuple(str(n) for n in self.names)
        units = tuple(str(u).strip() for u in self.units)
        if not names:
            raise ModelError("FeatureSchema needs at least one feature name.")
        if len(names) != len(units):
            raise ModelError(
                f"FeatureSchema has {len(names)} names {list(names)} but {len(units)} units {list(units)}; "
                "give one unit per feature (use '1' for dimensionless)."
            )
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ModelError(f"FeatureSchema names must be unique; duplicated: {dup}.")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "units", units)

    def __len__(self) -> int:
        return len(self.names)

    def check(self, other: FeatureSchema) -> None:
        """Raise :class:`SchemaMismatchError` unless ``other`` equals this schema.

        ``self`` is the schema a model was trained with; ``other`` describes the data it is
        about to be applied to. The message lists missing, extra, reordered and unit-changed
        features.
        """
        if not isinstance(other, FeatureSchema):
            raise ModelError(f"Expected a FeatureSchema to compare with, got {type(other).__name__}.")
        if other == self:
            return
        problems = []
        missing = [n for n in self.names if n not in other.names]
        extra = [n for n in other.names if n not in self.names]
        if missing:
            problems.append(f"missing from the data: {missing}")
        if extra:
            problems.append(f"not used by the model: {extra}")
        common_model = [n for n in self.names if n in other.names]
        common_data = [n for n in other.names if n in self.names]
        if common_model != common_data:
            problems.append(f"reordered: model order {common_model}, data order {common_data}")
        mine = dict(zip(self.names, self.units))
        theirs = dict(zip(other.names, other.units))
        changed = [f"{n}: model {mine[n]!r}, data {theirs[n]!r}" for n in common_model if mine[n] != theirs[n]]
        if changed:
            problems.append("units changed: " + "; ".join(changed))
        raise SchemaMismatchError(
            f"Features differ from those the model was trained on ({'; '.join(problems)}). "
            f"Model expects {self.describe()}; data has {other.describe()}. Build the features with "
            "the same names, units and order, or retrain the model on these features."
        )

    def describe(self) -> str:
        """``name [units], ...`` in column order."""
        return ", ".join(f"{n} [{u}]" for n, u in zip(self.names, self.units))

    def to_dict(self) -> dict:
        """JSON-ready ``{"names": [...], "units": [...]}``."""
        return {"names": list(self.names), "units": list(self.units)}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSchema:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(d, dict) or "names" not in d or "units" not in d:
            raise ModelError(f"A FeatureSchema dict needs keys 'names' and 'units'; got {d!r}.")
        return cls(tuple(d["names"]), tuple(d["units"]))
