"""The one writer of an analysis's output directory: JSON, CSV, PNG figures and TensorBoard.

Every `transfusion-analyze` mode writes through `Output`:
  <mode>.json / similarity.json   the payload (atomic, sorted keys, `workdir.write_json_atomic`)
  <mode>.csv / similarity.csv     one row per unit / variable / filter / measure
  *.png                           the figures (`analysis.figures`)
  tensorboard/                    each figure as an image summary (tag `<mode>/<png stem>`)
                                  and each results table as a Markdown text summary
TensorBoard shows the results as their figures and tables: a similarity per unit is not a
training curve, so nothing is written as a scalar over a unit index.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import tensorflow as tf

from transfusion_tf import workdir as workdir_lib

TENSORBOARD_DIR = workdir_lib.TENSORBOARD_DIR


def markdown_table(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
    """A Markdown table of `rows` with one column per key (floats to 4 decimals, None empty)."""

    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV of dict rows: the union of their keys in first-seen order, None as an empty cell."""
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in fields})
    return buffer.getvalue()


def by_model(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Records grouped by their "model" key, in first-seen order."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault(r["model"], []).append(r)
    return groups


class Output:
    """The output directory of one analysis mode; use as a context manager (closes TensorBoard).

    The TensorBoard writer is opened with the first figure or table, so a mode that fails
    before writing any leaves no event file.
    """

    def __init__(self, output_dir: str, *, mode: str) -> None:
        self.output_dir = output_dir
        self.mode = mode
        self._writer = None
        os.makedirs(output_dir, exist_ok=True)

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path(self, name: str) -> str:
        """`<output_dir>/<name>`."""
        return os.path.join(self.output_dir, name)

    def json(self, name: str, payload: Mapping[str, Any]) -> str:
        """Writes `payload` as `<name>` (indented, sorted keys) through a rename."""
        path = self.path(name)
        workdir_lib.write_json_atomic(path, payload)
        return path

    def csv(self, name: str, rows: Sequence[Mapping[str, Any]]) -> str:
        """Writes dict rows as `<name>` (`csv_text`) through a rename."""
        path = self.path(name)
        workdir_lib.write_text_atomic(path, csv_text(rows))
        return path

    def figure(self, name: str, plot: Callable[[str], str]) -> str:
        """Draws a PNG with `plot(path)` and logs it as the image `<mode>/<name without .png>`."""
        path = plot(self.path(name))
        png = tf.io.decode_png(tf.io.read_file(path), channels=3)
        with self._summaries().as_default():
            tf.summary.image(f"{self.mode}/{os.path.splitext(name)[0]}", png[None], step=0)
        return path

    def figures_per_model(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        stem: str,
        plot: Callable[[str, list[Mapping[str, Any]], str], str],
    ) -> list[str]:
        """One figure per model of `records`: `plot(model, its records, path)`.

        The file is `<stem>.png` when all records are of one model, else `<stem>_<model>.png`.
        """
        groups = by_model(records)
        paths = []
        for model, members in groups.items():
            suffix = "" if len(groups) == 1 else f"_{model}"
            paths.append(
                self.figure(
                    f"{stem}{suffix}.png",
                    lambda path, model=model, members=members: plot(model, members, path),
                )
            )
        return paths

    def table(self, name: str, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> None:
        """Logs `rows` as the Markdown table `<mode>/<name>` (TensorBoard's text tab)."""
        with self._summaries().as_default():
            tf.summary.text(f"{self.mode}/{name}", markdown_table(rows, keys), step=0)

    def close(self) -> None:
        """Flushes and closes the TensorBoard writer (if one was opened)."""
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None

    def _summaries(self):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.path(TENSORBOARD_DIR))
        return self._writer
