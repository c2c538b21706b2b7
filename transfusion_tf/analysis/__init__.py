"""transfusion_tf.analysis: representational analysis of runs (SPEC A1-A4).

- `cca`, `cka`: similarity measures of activations [examples, features] in float64;
- `streaming`: the same from batch-accumulated statistics, and minibatch CKA;
- `measures`: the `MEASURES` registry used by the analyses and `transfusion-analyze`;
- `activations`: unit outputs of a workdir's init/final weights over a fixed set of images;
- `analyses`: compare / init_vs_final / filters / weight_change / arrays, writing JSON, CSV,
  PNG (`figures`) and TensorBoard summaries.
"""
