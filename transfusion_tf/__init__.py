"""transfusion_tf — the Transfusion study (Raghu et al., NeurIPS 2019) in TensorFlow/Keras."""

__version__ = "0.1.0"
