"""The init report (SPEC I6): how every variable of a model got its initial value.

One row per model variable: the variable path, its layer and unit, `how` it was set
("copied", "copied_gray_sum", "meanvar", "bn_identity", "gabor", "random", "new_head"), the
source tensor it came from, and the source file with its SHA-256. The trainer writes it as
`init_report.json` and shows `summary()` in TensorBoard.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Any

HOW_VALUES = (
    "copied",
    "copied_gray_sum",
    "meanvar",
    "bn_identity",
    "gabor",
    "random",
    "new_head",
)


@dataclasses.dataclass
class InitReport:
    """Rows (one dict per variable) plus the settings and source the strategy used."""

    strategy: str
    model: str
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    source_file: str | None = None
    source_sha256: str | None = None
    source_description: str | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    def add(
        self,
        *,
        variable: str,
        layer: str,
        unit: str | None,
        how: str,
        source_tensor: str | None = None,
        source_file: str | None = None,
        source_sha256: str | None = None,
    ) -> None:
        """Records how one variable was set; sourced rows carry the source file and hash.

        `source_file`/`source_sha256` default to the report's own source.
        """
        if how not in HOW_VALUES:
            raise ValueError(f"unknown init action {how!r}; expected one of {HOW_VALUES}")
        sourced = source_tensor is not None
        self.rows.append(
            {
                "variable": variable,
                "layer": layer,
                "unit": unit,
                "how": how,
                "source_tensor": source_tensor,
                "source_file": (source_file or self.source_file) if sourced else None,
                "source_sha256": (source_sha256 or self.source_sha256) if sourced else None,
            }
        )

    def counts(self) -> dict[str, int]:
        """Number of variables per `how`."""
        return dict(collections.Counter(row["how"] for row in self.rows))

    def by_variable(self) -> dict[str, dict[str, Any]]:
        return {row["variable"]: row for row in self.rows}

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "model": self.model,
            "source_file": self.source_file,
            "source_sha256": self.source_sha256,
            "source_description": self.source_description,
            "settings": dict(self.settings),
            "notes": list(self.notes),
            "counts": self.counts(),
            "rows": list(self.rows),
        }

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def write(self, path: str) -> None:
        """Writes `to_json()` to `path` (parent directories are created)."""
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json())

    def summary(self) -> str:
        """A short Markdown text for TensorBoard: strategy, source, counts per unit and action."""
        lines = [f"**init** `{self.strategy}` on `{self.model}`"]
        if self.source_description:
            lines.append(f"source: {self.source_description}")
        if self.source_sha256:
            lines.append(f"source sha256: `{self.source_sha256}`")
        for key, value in sorted(self.settings.items()):
            lines.append(f"{key}: {value}")
        lines.extend(self.notes)
        per_unit: dict[str, collections.Counter] = collections.OrderedDict()
        for row in self.rows:
            per_unit.setdefault(row["unit"] or "head", collections.Counter())[row["how"]] += 1
        lines.append("")
        lines.append("| unit | variables |")
        lines.append("|---|---|")
        for unit, counter in per_unit.items():
            text = ", ".join(f"{how}: {n}" for how, n in sorted(counter.items()))
            lines.append(f"| {unit} | {text} |")
        return "\n".join(lines)
