"""transfusion_tf: analysis."""
