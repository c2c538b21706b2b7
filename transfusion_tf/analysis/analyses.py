"""The representational analyses of the paper's Section 4 over workdirs (SPEC A4).

Library entry points, one per `transfusion-analyze` mode and one module each under
`analysis.modes`; each writes `<mode>.json`, `<mode>.csv`, PNG figures and TensorBoard
summaries (`<output_dir>/tensorboard`: the figures as images, the results as a Markdown table)
through `analysis.output`, and returns the JSON payload as a dict:
- `compare_runs`: per-unit similarity between every pair of runs, and Fig. 2's statistic (the
  similarity of the top two units before the head, averaged) grouped by the pair's inits
  (random_vs_random, random_vs_transfer, transfer_vs_transfer; and by init names).
- `init_vs_final`: per-unit similarity of each run's init and final weights (Fig. 3); with
  several runs of one architecture also, for every pair of runs, their similarity at init vs
  after training per unit (Fig. 4 scatter).
- `filter_grids`: conv1 filters at init and final (Fig. 5) and how much each filter moved.
- `weight_change`: per-layer (and per-unit) ||W_final - W_init|| / ||W_init||.
- `analyze_arrays`: every similarity measure of two `.npy` activation files.
Runs are grouped by architecture (model, image size, channels, widths); pairs are only formed
within a group, since units are compared by name (`analysis.runs`).

Every similarity value comes with its chance level (SPEC A5, module `null`): per unit and pair,
`null` maps each measure to the {"mean", "sd", "permutations"} of the same measure with y's
images shuffled, `above_chance` maps it to whether the value exceeds the null mean by more than
3 null sd, and `datapoints_per_feature` is n / (p + q) (warned about below 10). The top-two
statistic of Fig. 2 carries the null of the same average (per permutation, over the two units;
`analysis.pairs`).
"""

from __future__ import annotations

from transfusion_tf.analysis.modes.arrays import analyze_arrays, load_activations
from transfusion_tf.analysis.modes.compare import compare_runs
from transfusion_tf.analysis.modes.filters import filter_grids
from transfusion_tf.analysis.modes.init_vs_final import init_final_correlations, init_vs_final
from transfusion_tf.analysis.modes.weight_change import weight_change
from transfusion_tf.analysis.pairs import (
    ABOVE_CHANCE_RULE,
    DEFAULT_ACTIVATION_MEASURES,
    RANDOM_INIT,
    UnitSimilarity,
    pair_group,
    pair_kind,
)
from transfusion_tf.analysis.runs import init_and_final_weights

MODES = ("compare", "init_vs_final", "filters", "weight_change", "arrays")
# The demo reads weights through the old private name.
_init_and_final_weights = init_and_final_weights

__all__ = [
    "ABOVE_CHANCE_RULE",
    "DEFAULT_ACTIVATION_MEASURES",
    "MODES",
    "RANDOM_INIT",
    "UnitSimilarity",
    "analyze_arrays",
    "compare_runs",
    "filter_grids",
    "init_and_final_weights",
    "init_final_correlations",
    "init_vs_final",
    "load_activations",
    "pair_group",
    "pair_kind",
    "weight_change",
]
