"""`transfusion-models`: every registered model with its parameter counts and units (SPEC M4).

Parameter counts do not depend on the input size (every model ends in global average
pooling), so each model is built once at its smallest input size; counts include the head
for `--num_tasks` outputs and `--channels` input channels.

Example:
  transfusion-models
  transfusion-models --json --num_tasks=5
"""

from __future__ import annotations

import json

from absl import app, flags

from transfusion_tf.models import registry as model_registry

FLAGS = flags.FLAGS

flags.DEFINE_list("names", None, "Models to list (default: all registered models).")
flags.DEFINE_integer("num_tasks", 1, "Outputs of the head included in the parameter counts.")
flags.DEFINE_integer("channels", 3, "Input channels.")
flags.DEFINE_bool("json", False, "Print a JSON list instead of a table.")
flags.DEFINE_bool("layers", False, "With --json, include the weighted layers of every unit.")


def describe_models(
    names: list[str], *, num_tasks: int, channels: int, with_layers: bool
) -> list[dict]:
    """One dict per model: name, param_count, paper_param_count, preprocess mode, units."""
    rows = []
    for name in names:
        size = model_registry.probe_image_size(name)
        model = model_registry.build_model(
            name, num_tasks=num_tasks, image_size=size, channels=channels
        )
        units = model_registry.model_units(model, name)
        rows.append(
            {
                "name": name,
                "param_count": int(model.count_params()),
                "paper_param_count": model_registry.paper_param_count(name),
                "preprocess_mode": model_registry.default_preprocess_mode(name),
                "min_image_size": model_registry.min_image_size(name),
                "units": [
                    {
                        "name": u.name,
                        "output_layer": u.output_layer,
                        "num_layers": len(u.layers),
                        **({"layers": list(u.layers)} if with_layers else {}),
                    }
                    for u in units
                ],
            }
        )
    return rows


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    names = FLAGS.names or model_registry.MODELS.names()
    unknown = [n for n in names if n not in model_registry.MODELS]
    if unknown:
        raise app.UsageError(
            f"--names: unknown models {unknown}; choose from "
            f"{', '.join(model_registry.MODELS.names())}"
        )
    if FLAGS.num_tasks < 1:
        raise app.UsageError(f"--num_tasks={FLAGS.num_tasks} must be at least 1")
    try:
        rows = describe_models(
            names, num_tasks=FLAGS.num_tasks, channels=FLAGS.channels, with_layers=FLAGS.layers
        )
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    if FLAGS.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"Parameter counts for {FLAGS.num_tasks} task(s), {FLAGS.channels} channel(s); "
        "they do not depend on the input size. Paper: Table 1's counting (CBR only)."
    )
    print(f"{'model':<16}{'params':>12}{'paper':>12}  units (output layer)")
    for row in rows:
        paper = f"{row['paper_param_count']:,}" if row["paper_param_count"] else "-"
        units = ", ".join(f"{u['name']} ({u['output_layer']})" for u in row["units"])
        print(f"{row['name']:<16}{row['param_count']:>12,}{paper:>12}  {units}")


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
