"""transfusion_tf: data."""
