"""`transfusion-synth`: writes synthetic images in a public dataset's on-disk layout (SPEC D4).

The files look like the real download (CSV columns, folder names, file types, DICOM tags), so
`transfusion-prepare` can be tried, tested and benchmarked without the real data:
  transfusion-synth --layout=chexpert --output_dir=raw/chexpert --num_examples=300
  transfusion-prepare --format=chexpert --input=raw/chexpert/CheXpert-v1.0-small \
      --output_dir=datasets/chexpert
"""

from __future__ import annotations

from absl import app, flags

from transfusion_tf.cli import common
from transfusion_tf.data import layouts

FLAGS = flags.FLAGS

flags.DEFINE_enum("layout", None, list(layouts.LAYOUTS), "On-disk layout to write.")
flags.DEFINE_string("output_dir", None, "Folder to write the raw files into.")
flags.DEFINE_integer("num_examples", 100, "Number of images.")
flags.DEFINE_integer("image_size", 64, "Side of the square images.")
flags.DEFINE_integer("seed", 0, "Seed of the synthetic generators.")
flags.mark_flags_as_required(["layout", "output_dir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    with common.usage_errors():
        layout = layouts.write_layout(
            layout=FLAGS.layout,
            output_dir=FLAGS.output_dir,
            num_examples=FLAGS.num_examples,
            image_size=FLAGS.image_size,
            seed=FLAGS.seed,
        )
    print(f"wrote {layout.num_images} {layout.layout} images under {FLAGS.output_dir}")
    for source_format, input_path in ((layout.format, layout.input_path), *layout.alternatives):
        print(f"  convert with: transfusion-prepare --format={source_format} --input={input_path}")


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
