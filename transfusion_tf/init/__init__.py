"""transfusion_tf: init."""
