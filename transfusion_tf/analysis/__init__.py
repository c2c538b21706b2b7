"""transfusion_tf.analysis: representational analysis of runs (SPEC A1-A4).

- `cca`, `cka`: similarity measures of activations [examples, features] in float64;
- `streaming`: the same from batch-accumulated statistics, and minibatch CKA;
- `measures`: the `MEASURES` registry used by the analyses and `transfusion-analyze`;
- `null`: permutation chance levels of every measure;
- `activations`: unit outputs of a workdir's init/final weights over a fixed set of images;
- `runs`, `pairs`: the workdirs an analysis reads, and per-unit similarity of pairs of runs;
- `modes`: one module per `transfusion-analyze` mode (compare / init_vs_final / filters /
  weight_change / arrays), `analyses` their entry points in one namespace;
- `output`: the one writer of JSON, CSV, PNG (`figures`) and TensorBoard (figures and tables).
"""
