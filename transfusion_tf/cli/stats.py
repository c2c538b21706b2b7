"""`transfusion-stats`: per-tensor mean/var/shape of source weights as JSON (SPEC I3).

Mean Var init then runs from this small file alone (`--init=meanvar --stats_file=...`).

Example:
  transfusion-stats --model=resnet50 --weights=imagenet --output=resnet50_imagenet_stats.json
  transfusion-stats --model=cbr_small --source_weights=runs/natural_source --output=stats.json
"""

from __future__ import annotations

import os

from absl import app, flags

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Registered model whose source weights are summarised.")
flags.DEFINE_string(
    "source_weights",
    None,
    "A weights file (legacy .h5 or .weights.h5), a .keras model or a training workdir.",
)
flags.DEFINE_enum("weights", None, ["imagenet"], "Use Keras' ImageNet weights of --model.")
flags.DEFINE_string("output", None, "Path of the JSON statistics file to write.")
flags.DEFINE_integer("channels", 3, "Input channels of the source model (files of our models).")
flags.DEFINE_list("widths", None, "CBR widths of the source model (files of our models).")
flags.DEFINE_float("width_multiplier", 0.5, "resnet50_slim width multiplier of the source.")
flags.mark_flags_as_required(["model", "output"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if (FLAGS.source_weights is None) == (FLAGS.weights is None):
        raise app.UsageError("give exactly one of --source_weights=PATH or --weights=imagenet")
    if FLAGS.source_weights is not None and not os.path.exists(FLAGS.source_weights):
        raise app.UsageError(f"--source_weights: source weights not found: {FLAGS.source_weights}")
    # TensorFlow is imported only once the flags are known to be usable.
    from transfusion_tf.init import stats as stats_lib
    from transfusion_tf.models import registry as model_registry

    if FLAGS.model not in model_registry.MODELS:
        raise app.UsageError(
            f"--model={FLAGS.model} is not registered; choose one of: "
            f"{', '.join(model_registry.MODELS.names())}"
        )
    try:
        widths = tuple(int(w) for w in FLAGS.widths) if FLAGS.widths else None
    except ValueError:
        raise app.UsageError(f"--widths must be integers; got {FLAGS.widths}") from None
    try:
        stats = stats_lib.compute_stats(
            model_name=FLAGS.model,
            source_weights=FLAGS.source_weights or FLAGS.weights,
            channels=FLAGS.channels,
            widths=widths,
            width_multiplier=FLAGS.width_multiplier,
        )
        stats_lib.write_stats(stats, FLAGS.output)
    except (ValueError, FileNotFoundError) as err:
        raise app.UsageError(str(err)) from None
    count = sum(len(items) for items in stats.layers.values())
    print(f"wrote {FLAGS.output}: {count} tensors of {len(stats.layers)} layers")
    print(f"source: {stats.description} (sha256 {stats.sha256})")


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
