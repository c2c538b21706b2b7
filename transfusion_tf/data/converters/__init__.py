"""transfusion_tf: converters."""
