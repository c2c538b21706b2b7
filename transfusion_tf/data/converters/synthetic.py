"""The `synthetic` format (SPEC D4): generates a learnable medical-looking dataset directly.

No input files: `options.synthetic_kind` picks the generator (fundus, cxr or natural) of
`transfusion_tf.data.synthetic`, `options.num_examples` its size; splits are drawn with
`valid_fraction`/`test_fraction` and the seed, like the converters of real layouts.
"""

from __future__ import annotations

from transfusion_tf.data import synthetic as synthetic_lib
from transfusion_tf.data.converters import base

KINDS = synthetic_lib.KINDS
DEFAULT_IMAGE_SIZE = 64


@base.CONVERTERS.register("synthetic")
def convert_synthetic(*, input_path: str, output_dir: str, options: base.ConvertOptions) -> dict:
    """Writes a synthetic dataset of `options.synthetic_kind` to `output_dir`; returns its info.

    `input_path` is unused (there is no source) and may be empty.
    """
    del input_path
    if options.synthetic_kind not in KINDS:
        raise base.ConversionError(
            f"unknown --synthetic_kind {options.synthetic_kind!r}; choose one of {', '.join(KINDS)}"
        )
    if options.backend != "local":
        raise base.ConversionError(
            "--format=synthetic renders its images on this machine; --backend=ray converts "
            "downloaded layouts (write one with transfusion-synth, then convert it)"
        )
    kwargs = {}
    if options.num_shards is not None:
        kwargs["num_shards"] = options.num_shards
    if options.tasks is not None:
        kwargs["tasks"] = options.tasks
    return synthetic_lib.write_synthetic_dataset(
        kind=options.synthetic_kind,
        output_dir=output_dir,
        num_examples=options.num_examples,
        image_size=options.image_size or DEFAULT_IMAGE_SIZE,
        seed=options.seed,
        valid_fraction=options.valid_fraction,
        test_fraction=options.test_fraction,
        workers=options.resolved_workers(),
        uncertain_policy=options.uncertain_policy,
        overwrite=options.overwrite,
        **kwargs,
    )
