"""transfusion_tf: report."""
