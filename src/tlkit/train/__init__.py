"""Training: the plan, the trainer and its hooks, the two routes, strategies and checkpoints.

``plan`` (what to train) -> ``routes`` (images, or cached features from ``feature_store``) ->
``trainer`` (stages and epochs) with ``hooks`` (schedule, NaN guard, best model, early
stopping, checkpoints via ``state``, history, TensorBoard, progress); ``custom_loop`` is the
multi-worker step, ``strategy`` picks the ``tf.distribute`` strategy, ``config`` is the
recipe's ``train`` section. Import the modules themselves; this package imports nothing.
"""
