"""Keras' private APIs that tlkit reads: taken on the installed Keras, loud where they are gone.

Three places read Keras internals (tested on Keras 3.15.1, the version CI installs):

* the freeze depths read ``Functional._nodes_by_depth``; without it (or unreadable) they are
  read from public attributes, with a warning: the same result, checked here on the zoo;
* per-group learning rates read the optimizer's ``_get_variable_index`` and
  ``_trainable_variables``; without them a multiplier would silently not apply: an error;
* checkpoints are built in memory with ``keras.src.saving.saving_lib``; without it
  ``model.save_weights`` writes the same file, with a warning.

Each fallback is simulated by removing or breaking the private attribute with monkeypatch.
"""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager

import keras
import numpy as np
import pytest
from freeze_helpers import TINY, build_finetune_model

from tlkit.errors import TlkitError
from tlkit.freeze import groups
from tlkit.freeze.groups import freeze_groups, layer_depths
from tlkit.freeze.lr import PRIVATE, apply_lr_multipliers, variable_multipliers
from tlkit.models.heads import build_transfer_model
from tlkit.models.registry import get_model_info
from tlkit.train import state

VERSION = keras.__version__


@contextmanager
def no_tlkit_warning():
    """Fails the block if tlkit warns (of a fallback); other libraries' warnings pass."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    ours = [str(w.message) for w in caught if str(w.message).startswith("tlkit:")]
    assert not ours, ours


# -- freeze depths: Functional._nodes_by_depth ------------------------------------------------


def _with_bare_op() -> keras.Model:
    """Layers joined by a bare keras.ops call (an operation that is no layer) and a branch."""
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.ops.take(inputs, [2, 1, 0], axis=-1)  # what caffe preprocessing does
    a = keras.layers.Conv2D(4, 3, padding="same", name="block1_conv")(x)
    b = keras.layers.Conv2D(4, 1, name="block1_shortcut")(x)
    x = keras.layers.Add(name="block1_add")([a, b])
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="predictions")(x))


def test_installed_keras_takes_the_private_graph_path(monkeypatch):
    model = build_finetune_model("resnet18")
    assert isinstance(getattr(model, "_nodes_by_depth", None), dict)

    def public(graph):
        raise AssertionError("the public fallback was taken")

    monkeypatch.setattr(groups, "_parents_from_tensors", public)
    with no_tlkit_warning():
        depths = layer_depths(model)
        freeze_groups(model, get_model_info("resnet18"))
    assert depths["conv5_block2_2_conv"] == 17 and depths["conv3_block1_0_conv"] == 6


@pytest.mark.parametrize("build", [
    lambda: build_finetune_model("resnet18"),  # residual units, projection shortcuts
    lambda: build_finetune_model("googlenet"),  # inception branches
    lambda: build_transfer_model(get_model_info("vgg16"), 3, image_size=32),  # caffe: ops.take
    _with_bare_op,
])
def test_the_public_fallback_reads_the_same_graph(build):
    model = build()
    private = groups._parents_from_nodes(model._nodes_by_depth)
    assert groups._parents_from_tensors(model) == private


def test_without_nodes_by_depth_the_depths_are_the_same_with_a_warning(monkeypatch):
    model = build_finetune_model("resnet18")
    expected = layer_depths(model)
    monkeypatch.delattr(model, "_nodes_by_depth")
    assert not hasattr(model, "_nodes_by_depth")
    with pytest.warns(RuntimeWarning, match=rf"Keras {VERSION} has no Functional\._nodes_by_depth"):
        assert layer_depths(model) == expected


def test_an_unreadable_nodes_by_depth_warns_and_reads_the_public_graph(monkeypatch):
    model = _with_bare_op()
    expected = layer_depths(model)
    monkeypatch.setattr(model, "_nodes_by_depth", {0: [object()]}, raising=False)
    with pytest.warns(RuntimeWarning, match="_nodes_by_depth that tlkit cannot read"):
        assert layer_depths(model) == expected
    monkeypatch.setattr(model, "_nodes_by_depth", {}, raising=False)  # leaves layers out
    with pytest.warns(RuntimeWarning, match="without the layers"):
        assert layer_depths(model) == expected


def test_a_model_without_a_graph_is_an_error_not_a_guessed_chain():
    class Branching(keras.Model):
        def __init__(self):
            super().__init__()
            self.a = keras.layers.Dense(2, name="block1_a")
            self.b = keras.layers.Dense(2, name="block1_b")

        def call(self, x):
            return self.a(x) + self.b(x)  # a chain would put b after a

    model = Branching()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(TlkitError, match=rf"Keras {VERSION} has no Functional\._nodes_by_depth"):
        layer_depths(model)


def test_the_public_fallback_refuses_a_layer_another_model_called_first(monkeypatch):
    shared = keras.layers.Dense(2, name="predictions")
    shared(keras.Input((3,)))  # its first call is in no model of ours
    inputs = keras.Input((3,))
    model = keras.Model(inputs, shared(keras.layers.Dense(3, name="block1_dense")(inputs)))
    monkeypatch.delattr(model, "_nodes_by_depth")
    with pytest.warns(RuntimeWarning), pytest.raises(TlkitError, match="cannot place"):
        layer_depths(model)


# -- per-group learning rates: the optimizer's _get_variable_index, _trainable_variables --------


def _tiny(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(5, activation="tanh", name="block1_dense")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="predictions")(x))


DATA = (np.random.default_rng(0).normal(size=(8, 6)).astype("float32"), np.arange(8) % 3)


def _fit_one_step(optimizer, model=None):
    """One fit step with ``block1`` at a quarter of the rate; the kernels' changes."""
    model = model or _tiny()
    apply_lr_multipliers(optimizer, variable_multipliers(model, TINY, {"block1": 0.25}))
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(True))
    before = {n: model.get_layer(n).kernel.numpy().copy() for n in ("block1_dense", "predictions")}
    model.fit(*DATA, batch_size=8, epochs=1, verbose=0, shuffle=False)
    return {n: model.get_layer(n).kernel.numpy() - k for n, k in before.items()}


def test_installed_keras_has_the_optimizer_internals_and_the_multiplier_applies():
    optimizer = keras.optimizers.SGD(0.1)
    assert all(hasattr(optimizer, name) for name in PRIVATE)
    with no_tlkit_warning():
        scaled = _fit_one_step(optimizer)
    model = _tiny()
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(True))
    before = model.get_layer("block1_dense").kernel.numpy().copy()
    model.fit(*DATA, batch_size=8, epochs=1, verbose=0, shuffle=False)
    plain = model.get_layer("block1_dense").kernel.numpy() - before
    np.testing.assert_allclose(scaled["block1_dense"], 0.25 * plain, rtol=1e-4, atol=1e-7)


def test_an_optimizer_without_the_private_index_is_an_error(monkeypatch):
    optimizer = keras.optimizers.SGD(0.1)
    owner = next(k for k in type(optimizer).__mro__ if "_get_variable_index" in vars(k))
    monkeypatch.delattr(owner, "_get_variable_index")
    with pytest.raises(TlkitError, match=rf"Keras {VERSION}'s SGD has no _get_variable_index"):
        apply_lr_multipliers(optimizer, {"block1_dense/kernel": 0.25})


def test_an_index_that_breaks_at_the_update_is_an_error():
    optimizer = keras.optimizers.SGD(0.1)

    def no_index(variable):
        raise KeyError("not tracked")

    optimizer._get_variable_index = no_index
    with pytest.raises(TlkitError, match=r"cannot find a variable's path.*Keras >= 3\.15\.1"):
        _fit_one_step(optimizer)


def test_an_optimizer_that_bypasses_update_step_is_an_error():
    # A Keras whose optimizer updates variables without update_step would leave every
    # multiplier unapplied: the pretrained layers at the head's rate.
    optimizer = keras.optimizers.SGD(0.1)

    def fused(grads, variables, learning_rate):
        for grad, var in zip(grads, variables, strict=True):
            var.assign_sub(learning_rate * grad)

    optimizer._backend_update_step = fused
    with pytest.raises(TlkitError, match="did not pass 'block1_dense/.*' .* through update_step"):
        _fit_one_step(optimizer)


# -- checkpoints: keras.src.saving.saving_lib --------------------------------------------------


def _checkpoint(tmp_path):
    model = _tiny(1)
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    state.save_checkpoint(tmp_path, "c1", model, optimizer)
    other = _tiny(2)
    other_optimizer = keras.optimizers.SGD(0.1)
    other_optimizer.build(other.trainable_variables)
    state.restore_checkpoint(tmp_path, "c1", other, other_optimizer)
    for a, b in zip(model.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    return model


def test_installed_keras_writes_checkpoints_through_its_saving_lib(tmp_path, monkeypatch):
    def public(self, *args, **kwargs):
        raise AssertionError("the public fallback was taken")

    monkeypatch.setattr(keras.Model, "save_weights", public)
    with no_tlkit_warning():
        _checkpoint(tmp_path)


def test_without_keras_saving_lib_checkpoints_fall_back_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "keras.src.saving.saving_lib", None)  # import fails
    with pytest.warns(RuntimeWarning, match=rf"model\.save_weights: Keras {VERSION} has no "
                      r"keras\.src\.saving\.saving_lib\.H5IOStore/_save_state"):
        _checkpoint(tmp_path)


def test_a_saving_lib_that_changed_falls_back_with_a_warning(tmp_path, monkeypatch):
    from keras.src.saving import saving_lib

    original = saving_lib.H5IOStore

    class Changed(original):
        """A Keras whose store takes paths only (the public save_weights still works)."""

        def __init__(self, path_or_io, *args, **kwargs):
            if not isinstance(path_or_io, (str, os.PathLike)):
                raise TypeError("H5IOStore() takes a path")
            super().__init__(path_or_io, *args, **kwargs)

    monkeypatch.setattr(saving_lib, "H5IOStore", Changed)
    with pytest.warns(RuntimeWarning, match="_save_state that differ"):
        _checkpoint(tmp_path)


def test_the_replica_build_override_is_installed_on_the_tested_keras_and_warns_without_it():
    """``train.trainer`` replaces Keras' private ``_maybe_symbolic_build`` (keras#19246); on a
    Keras without it the override would be set and never called, so it says so instead."""
    import types

    from tlkit.train.strategy import build_from_first_replica

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_from_first_replica(model)
    assert isinstance(model.__dict__["_maybe_symbolic_build"], types.MethodType)
    with pytest.warns(RuntimeWarning, match="_maybe_symbolic_build"):
        build_from_first_replica(types.SimpleNamespace())
