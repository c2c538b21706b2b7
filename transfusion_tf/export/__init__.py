"""transfusion_tf: export."""
