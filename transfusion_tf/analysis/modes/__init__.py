"""The `transfusion-analyze` modes, one module each; all write through `analysis.output`."""
