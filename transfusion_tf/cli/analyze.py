"""`transfusion-analyze`: representational analyses of trained runs (SPEC A4).

Modes (each writes JSON, CSV, PNG figures and TensorBoard summaries under --output_dir):
  compare        similarity per unit between runs; Fig. 2's top-two-unit statistic by init pair
  init_vs_final  per-unit similarity of each run's init and final weights (Fig. 3), Fig. 4 scatter
  filters        conv1 filter grids at init and final (Fig. 5)
  weight_change  per-layer ||W_final - W_init|| / ||W_init||
  arrays         every similarity measure of two .npy activation files (examples x features)

Examples:
  transfusion-analyze --mode=compare --workdirs=runs/rand_s0,runs/rand_s1,runs/inet_s0 \
      --output_dir=analysis/compare
  transfusion-analyze --mode=arrays --a=acts_a.npy --b=acts_b.npy --output_dir=analysis/arrays
"""

from __future__ import annotations

import json

from absl import app, flags

from transfusion_tf import workdir as workdir_lib
from transfusion_tf.analysis import activations as act
from transfusion_tf.analysis import analyses, measures
from transfusion_tf.analysis import null as null_lib
from transfusion_tf.analysis.common import SimilarityError

FLAGS = flags.FLAGS

flags.DEFINE_enum("mode", None, list(analyses.MODES), "Which analysis to run.")
flags.DEFINE_string("output_dir", None, "Directory for the JSON, CSV, PNG and TensorBoard files.")
flags.DEFINE_list("workdirs", [], "transfusion-train workdirs (every mode but arrays).")
flags.DEFINE_string(
    "dataset_dir",
    None,
    "Dataset whose images the activations are taken on (compare, init_vs_final); default: the "
    "dataset in the first workdir's config.json.",
)
flags.DEFINE_string("split", "valid", "Dataset split of the images.")
flags.DEFINE_integer(
    "num_examples",
    act.ActivationSpec.num_examples,
    "First N examples of the split (fixed order); the default keeps chance CCA at ResNet50's "
    "block4 near 0.2 (README, Chance levels).",
)
flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")
flags.DEFINE_enum(
    "conv_policy",
    "positions",
    list(act.CONV_POLICIES),
    "Conv maps: every (image, position) a datapoint (capped by --max_positions), or global "
    "average pool (one datapoint per image).",
)
flags.DEFINE_integer(
    "max_positions",
    act.ActivationSpec.max_positions,
    "positions policy: at most this many per image.",
)
flags.DEFINE_integer(
    "seed",
    0,
    "Seed of position subsampling, of the null's permutations and of the arrays-mode Gram.",
)
flags.DEFINE_integer(
    "null_permutations",
    null_lib.DEFAULT_PERMUTATIONS,
    "Chance level of every similarity value: the same measure with one side's images shuffled, "
    "this many times (0: no null; otherwise >= 2). A value stands above chance when it exceeds "
    f"the null mean by more than {null_lib.ABOVE_CHANCE_SD:g} null sd.",
)
flags.DEFINE_integer(
    "rows_per_image",
    1,
    "arrays: consecutive rows that belong to one image (e.g. the positions of a flattened conv "
    "map); the null shuffles whole images.",
)
flags.DEFINE_enum(
    "weights", "final", list(workdir_lib.WEIGHT_CHOICES), "compare: which weights of each run."
)
flags.DEFINE_list("units", [], "Units to analyse (default: every unit of the model).")
flags.DEFINE_list(
    "measures",
    [],
    "Similarity measures; the first is the one in the figures. Default: "
    f"{','.join(analyses.DEFAULT_ACTIVATION_MEASURES)} for activations, all for arrays. "
    f"Choices: {','.join(measures.MEASURES.names())}.",
)
flags.DEFINE_string(
    "svcca_dims",
    "0.99",
    "SVCCA directions per side: an integer count (e.g. 20) or a kept-variance fraction in "
    "(0, 1) (e.g. 0.99).",
)
flags.DEFINE_float("rbf_threshold", 1.0, "RBF CKA bandwidth as a multiple of the median distance.")
flags.DEFINE_integer(
    "minibatch_size",
    1024,
    "cka_minibatch: datapoints (rows) per minibatch, >= 4; streamed rows are cut into "
    "consecutive minibatches of this size whatever --batch_size is.",
)
flags.DEFINE_string("a", None, "arrays: first .npy activation file [examples, features].")
flags.DEFINE_string("b", None, "arrays: second .npy activation file [examples, features].")
flags.DEFINE_integer(
    "max_gram_examples", 5000, "arrays: RBF CKA uses a seeded subsample of this many rows."
)
flags.DEFINE_integer("max_filters", 64, "filters: at most this many conv1 filters per grid.")
flags.mark_flags_as_required(["mode", "output_dir"])


def parse_svcca_dims(text: str) -> int | float:
    """--svcca_dims as an int count or a float fraction; ValueError names the flag."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--svcca_dims={text!r} is neither an integer nor a fraction") from None
    if value >= 1 and value == int(value) and "." not in text:
        return int(value)
    if not 0 < value <= 1:
        raise ValueError(f"--svcca_dims={text!r}: a fraction must be in (0, 1]")
    return value


def _options() -> measures.MeasureOptions:
    if FLAGS.rbf_threshold <= 0:
        raise ValueError(f"--rbf_threshold={FLAGS.rbf_threshold} must be > 0")
    if FLAGS.minibatch_size < 4:
        raise ValueError(f"--minibatch_size={FLAGS.minibatch_size} must be >= 4")
    return measures.MeasureOptions(
        svcca_dims=parse_svcca_dims(FLAGS.svcca_dims),
        rbf_threshold=FLAGS.rbf_threshold,
        minibatch_size=FLAGS.minibatch_size,
    )


def _check_null_permutations() -> int:
    k = FLAGS.null_permutations
    if k < 0 or k == 1:
        raise ValueError(f"--null_permutations={k} must be 0 (no chance level) or >= 2")
    return k


def _spec() -> act.ActivationSpec:
    return act.ActivationSpec(
        null_permutations=_check_null_permutations(),
        split=FLAGS.split,
        num_examples=FLAGS.num_examples,
        batch_size=FLAGS.batch_size,
        conv_policy=FLAGS.conv_policy,
        max_positions=FLAGS.max_positions,
        seed=FLAGS.seed,
    )


def _run_mode() -> dict:
    mode = FLAGS.mode
    if mode == "arrays":
        if not FLAGS.a or not FLAGS.b:
            raise ValueError("--mode=arrays needs --a and --b (.npy activation files)")
        return analyses.analyze_arrays(
            a_path=FLAGS.a,
            b_path=FLAGS.b,
            output_dir=FLAGS.output_dir,
            measures=FLAGS.measures or None,
            options=_options(),
            max_gram_examples=FLAGS.max_gram_examples,
            seed=FLAGS.seed,
            null_permutations=_check_null_permutations(),
            rows_per_image=FLAGS.rows_per_image,
        )
    if not FLAGS.workdirs:
        raise ValueError(f"--mode={mode} needs --workdirs")
    if mode == "weight_change":
        return analyses.weight_change(workdirs=FLAGS.workdirs, output_dir=FLAGS.output_dir)
    if mode == "filters":
        return analyses.filter_grids(
            workdirs=FLAGS.workdirs, output_dir=FLAGS.output_dir, max_filters=FLAGS.max_filters
        )
    common = {
        "workdirs": FLAGS.workdirs,
        "output_dir": FLAGS.output_dir,
        "dataset_dir": FLAGS.dataset_dir,
        "measures": FLAGS.measures or analyses.DEFAULT_ACTIVATION_MEASURES,
        "options": _options(),
        "spec": _spec(),
        "units": FLAGS.units or None,
    }
    if mode == "compare":
        return analyses.compare_runs(weights=FLAGS.weights, **common)
    return analyses.init_vs_final(**common)


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _summary(payload: dict) -> str:
    """A few lines for the terminal; the files hold everything."""
    mode = payload["mode"]
    if mode == "arrays":
        lines = [
            f"{payload['examples']} datapoints, {payload['a_features']} + "
            f"{payload['b_features']} features ({payload['datapoints_per_feature']:.1f} per "
            "feature)"
        ]
        for k in [k for k in measures.MEASURES.names() if k in payload]:
            null = payload["null"][k]
            chance = (
                "no null"
                if null["mean"] is None
                else f"chance {null['mean']:.3f} ± {null['sd']:.3f} "
                f"(n={null['permutations']}); "
                + ("above chance" if payload["above_chance"][k] else "NOT above chance")
            )
            lines.append(f"{k:20s} {_fmt(payload[k], '.4f')}  {chance}")
        return "\n".join(lines)
    if mode == "compare":
        return json.dumps(payload["groups"]["by_kind"], indent=2)
    lines = []
    for r in payload["runs"]:
        if mode == "init_vs_final":
            m = payload["primary_measure"]
            cells = [f"{u}={_fmt(v[m], '.3f')}" for u, v in r["units"].items()]
        elif mode == "weight_change":
            cells = [f"{u}={_fmt(v, '.3g')}" for u, v in r["units"].items()]
        else:
            cells = [f"conv1 relative change {_fmt(r['relative_change'], '.3g')}"]
        lines.append(f"{r['run']}: " + ", ".join(cells))
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        payload = _run_mode()
    except (ValueError, FileNotFoundError, SimilarityError) as err:  # workdir errors included
        raise app.UsageError(str(err)) from None
    print(f"{FLAGS.mode}: results in {FLAGS.output_dir}")
    print(_summary(payload))


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
