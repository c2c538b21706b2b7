"""transfusion_tf: models."""
