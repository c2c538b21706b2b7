"""Unit maps (SPEC M4): the ordered blocks of a model that transfusion and the analyses act on.

A *unit* is a contiguous stage of a network in the paper's words (ResNet50: conv1, block1..block4;
Inception-v3: stem, block1..block3; DenseNet121: conv1, block1..block4; CBR: conv1..convN). Each
unit owns the weighted layers between the previous unit's output layer and its own output layer,
in `model.layers` order (a topological order of the Keras functional graph).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras

HEAD_LAYERS = ("head",)


@dataclasses.dataclass(frozen=True)
class Unit:
    """One unit: its name, the weighted layers it owns (in order) and its representative output."""

    name: str
    layers: tuple[str, ...]
    output_layer: str

    def to_dict(self) -> dict:
        return {"name": self.name, "layers": list(self.layers), "output_layer": self.output_layer}


def split_into_units(
    model: keras.Model, boundaries: Sequence[tuple[str, str]], *, model_name: str
) -> list[Unit]:
    """Assigns every weighted non-head layer of `model` to a unit.

    Args:
      model: a built model whose `layers` are in topological order.
      boundaries: ordered `(unit_name, output_layer_name)` pairs; a unit owns the weighted layers
        that come after the previous unit's output layer and up to its own output layer.
      model_name: used in error messages.

    Returns:
      The ordered list of units; together they own every weighted layer except the head.

    Raises:
      ValueError: when an output layer is missing or a weighted layer falls outside all units.
    """
    names = [layer.name for layer in model.layers]
    missing = [out for _, out in boundaries if out not in names]
    if missing:
        raise ValueError(f"model {model_name!r}: unit output layers {missing} not in the model")
    units: list[Unit] = []
    index = 0
    current: list[str] = []
    for layer in model.layers:
        if layer.name in HEAD_LAYERS:
            continue
        if index >= len(boundaries):
            if layer.weights:
                raise ValueError(
                    f"model {model_name!r}: weighted layer {layer.name!r} comes after the last "
                    f"unit output {boundaries[-1][1]!r}"
                )
            continue
        if layer.weights:
            current.append(layer.name)
        unit_name, output_layer = boundaries[index]
        if layer.name == output_layer:
            units.append(Unit(unit_name, tuple(current), output_layer))
            current = []
            index += 1
    if index != len(boundaries):
        raise ValueError(f"model {model_name!r}: unit outputs are not in topological order")
    return units


def unit_of_layer(units: Sequence[Unit]) -> dict[str, str]:
    """Maps each weighted layer name to the name of the unit that owns it."""
    return {layer: unit.name for unit in units for layer in unit.layers}


def resolve_unit_index(units: Sequence[Unit], upto: str | int, *, model_name: str) -> int:
    """Index of the last unit named by `upto` (a unit name or a 1-based count of units).

    Raises:
      ValueError: naming the valid unit names when `upto` is neither.
    """
    names = [unit.name for unit in units]
    text = str(upto).strip()
    if text in names:
        return names.index(text)
    if text.isdigit():
        count = int(text)
        if 1 <= count <= len(units):
            return count - 1
        raise ValueError(
            f"transfuse_upto={text}: model {model_name!r} has {len(units)} units "
            f"({', '.join(names)}); give a count in 1..{len(units)} or a unit name"
        )
    raise ValueError(
        f"transfuse_upto={text!r} is not a unit of model {model_name!r}; "
        f"choose one of: {', '.join(names)} (or a count 1..{len(units)})"
    )
