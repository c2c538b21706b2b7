"""`transfusion-export`: a run as a TF-Serving SavedModel `<export_dir>/<name>/<version>/` (T6).

Example:
  transfusion-export --workdir=runs/r0 --name=fundus_resnet50 --version=1 \
      --export_dir=savedmodels
"""

from __future__ import annotations

from absl import app, flags

from transfusion_tf import workdir as workdir_lib
from transfusion_tf.cli import common

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "A finished transfusion-train workdir.")
flags.DEFINE_string("name", None, "Model name under --export_dir.")
flags.DEFINE_integer("version", None, "Integer version (default: one more than the highest).")
flags.DEFINE_string("export_dir", "savedmodels", "TF-Serving model base directory.")
flags.DEFINE_enum(
    "weights", "final", list(workdir_lib.WEIGHT_CHOICES), "Weights of the run to export."
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from transfusion_tf.export import saved_model

    with common.usage_errors():
        if not FLAGS.workdir:
            raise ValueError("--workdir is required")
        if not FLAGS.name:
            raise ValueError("--name is required")
        path = saved_model.export_saved_model(
            workdir=FLAGS.workdir,
            export_dir=FLAGS.export_dir,
            name=FLAGS.name,
            version=FLAGS.version,
            weights=FLAGS.weights,
        )
    print(path)


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
