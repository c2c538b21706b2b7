"""transfusion_tf: cli."""
