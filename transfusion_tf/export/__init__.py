"""transfusion_tf.export: SavedModel export of a finished run (SPEC T6), see `saved_model`."""
