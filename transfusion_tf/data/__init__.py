"""transfusion_tf.data: TFRecord schema and writer, decoding, preprocessing, input pipeline,
synthetic datasets (SPEC D1-D4). Import the submodules; this package imports nothing heavy so
worker processes can load `synthetic` and `encode` without TensorFlow."""
