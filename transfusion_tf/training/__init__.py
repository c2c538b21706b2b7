"""transfusion_tf: training."""
