"""Measures the chance level of each similarity measure on real model sizes (SPEC A5).

Two independently initialised (random-weight) copies of a model look at the same synthetic
fundus photographs at the model's input size; for each unit and each number of images, the
script reports every measure's value between the two copies and its permutation null (the same
measure with one copy's images shuffled). Random copies share no learned features, but both map
the same images, so their true similarity is not zero: the null tells how much of the number any
unrelated pairing already gives. The README's table of chance levels comes from this script.

Example:
  python scripts/chance_levels.py --model=resnet50 --image_size=224 --units=block3,block4 \
      --num_examples=256,1024 --output=chance_resnet50.json
"""

from __future__ import annotations

import json
import time

import keras
import numpy as np
from absl import app, flags, logging

from transfusion_tf.analysis import activations as act
from transfusion_tf.analysis import measures as measures_lib
from transfusion_tf.analysis import null as null_lib
from transfusion_tf.data import preprocess, synthetic
from transfusion_tf.models import registry

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "resnet50", "Registered model name.")
flags.DEFINE_integer("image_size", 224, "Input size (the paper's: 224 for CheXpert).")
flags.DEFINE_list("units", ["block3", "block4"], "Units to measure.")
flags.DEFINE_list("num_examples", ["256", "1024"], "Numbers of images to measure at.")
flags.DEFINE_integer("max_positions", 64, "Positions per image (the analysis default).")
flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")
flags.DEFINE_integer("null_permutations", 10, "Permutations of the null.")
flags.DEFINE_list("svcca_dims", ["0.99", "20"], "SVCCA settings to measure.")
flags.DEFINE_string("output", None, "Write the rows as JSON here.")


def _images(*, count: int, size: int, mode: str, batch: int):
    done = 0
    while done < count:
        n = min(batch, count - done)
        raw = np.stack(
            [synthetic.sample_fundus(done + i, seed=7, size=size).image for i in range(n)]
        )
        yield np.asarray(preprocess.normalize(np.asarray(raw, np.float32) / 255.0, mode=mode))
        done += n


def _run(seed: int) -> act.LoadedRun:
    keras.utils.set_random_seed(seed)
    model = registry.build_model(FLAGS.model, num_tasks=5, image_size=FLAGS.image_size)
    units = registry.model_units(model, FLAGS.model)
    return act.LoadedRun(
        workdir=f"random_seed{seed}", which="init", config=None, model=model, units=units
    )


def main(argv: list[str]) -> None:
    del argv
    runs = [_run(0), _run(1)]
    mode = registry.default_preprocess_mode(FLAGS.model)
    options = {}
    for text in FLAGS.svcca_dims:
        dims = int(text) if "." not in text else float(text)
        options[f"svcca_mean@{text}"] = measures_lib.MeasureOptions(svcca_dims=dims)
    rows = []
    for count in [int(c) for c in FLAGS.num_examples]:
        spec = act.ActivationSpec(
            num_examples=count,
            batch_size=FLAGS.batch_size,
            max_positions=FLAGS.max_positions,
            null_permutations=FLAGS.null_permutations,
        )
        start = time.perf_counter()
        stats = act.pairwise_unit_similarity(
            runs,
            [(0, 1)],
            images=_images(count=count, size=FLAGS.image_size, mode=mode, batch=FLAGS.batch_size),
            unit_names=FLAGS.units,
            spec=spec,
        )[(0, 1)]
        for unit in FLAGS.units:
            s = stats[unit]
            row = {
                "model": FLAGS.model,
                "image_size": FLAGS.image_size,
                "unit": unit,
                "images": count,
                "datapoints": s.n,
                "features": s.x_features,
                "datapoints_per_feature": null_lib.datapoints_per_feature(
                    s.n, s.x_features, s.y_features
                ),
            }
            plain = ["cca_mean", "pwcca", "cka_linear"]
            settings = [(m, m, measures_lib.MeasureOptions()) for m in plain]
            settings += [(label, "svcca_mean", o) for label, o in options.items()]
            nulls = s.null_statistics()
            for label, name, opts in settings:
                (value,) = measures_lib.measures_from_statistics(
                    s.covariance(), {}, names=[name], options=opts
                ).values()
                samples = [
                    measures_lib.measures_from_statistics(cov, {}, names=[name], options=opts)[name]
                    for cov, _ in nulls
                ]
                summary = null_lib.summarize(samples)
                row[label] = {
                    "value": value,
                    "null_mean": summary["mean"],
                    "null_sd": summary["sd"],
                    "above_chance": null_lib.above_chance(value, summary),
                }
            row["seconds"] = time.perf_counter() - start
            rows.append(row)
            logging.info("%s", json.dumps(row))
    labels = ["cca_mean", "pwcca", "cka_linear", *options]
    print(
        "| model | unit | images | datapoints / feature | "
        + " | ".join(f"{m}: value / null ± sd" for m in labels)
        + " |"
    )
    print("|" + "---|" * (4 + len(labels)))
    for r in rows:
        cells = [
            f"{r[m]['value']:.3f} / {r[m]['null_mean']:.3f} ± {r[m]['null_sd']:.3f}" for m in labels
        ]
        print(
            f"| {r['model']} {r['image_size']}px | {r['unit']} ({r['features']}) | {r['images']} "
            f"({r['datapoints']}) | {r['datapoints_per_feature']:.1f} | " + " | ".join(cells) + " |"
        )
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    app.run(main)
