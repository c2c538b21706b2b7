"""transfusion_tf.training: the trainer and its parts (SPEC T1-T5, T7).

`trainer.train_and_evaluate(config)` runs one study run; `loop` is the custom distributed loop,
`losses` the masked multi-label BCE, `metrics` exact AUC/AUPRC (+ bootstrap CIs), `optim`
optimizers and schedules, `strategy` tf.distribute selection, `checkpoint` backups and weights
files, `summaries` TensorBoard records, `evaluation` the `transfusion-evaluate` library and
`exported` the layout of an exported SavedModel (which `export` writes and evaluation reads).
The run record itself (the workdir's files) belongs to `transfusion_tf.workdir`.
"""
