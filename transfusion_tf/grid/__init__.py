"""Experiment grids at scale (SPEC X2, X4): the grid as data, run by a backend.

`spec` turns flagfiles × seeds into `Run`s (workdir, argv, resources, the source runs each
depends on); `runner.run_grid` skips finished runs, hands the rest to a backend and writes the
report; `local` runs them on this machine (`max_parallel` at a time, GPUs pinned per run) and
`ray_backend` as Ray Core tasks on a private local instance or a cluster (`pip install
transfusion_tf[ray]`). `transfusion-grid` (cli/grid.py) is the command line over them.
"""

from transfusion_tf.grid.runner import GridResult, Outcome, run_grid
from transfusion_tf.grid.spec import Grid, Resources, Run, build_grid

__all__ = ["Grid", "GridResult", "Outcome", "Resources", "Run", "build_grid", "run_grid"]
