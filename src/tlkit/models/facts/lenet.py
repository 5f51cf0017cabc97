"""LeNet-5's facts: its two registry entries, the modern form and the paper's.

Reference: Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-Based Learning Applied to
Document Recognition", Proc. IEEE 86(11), 1998. Built by :mod:`tlkit.models.lenet`, whose
docstring says why ``weight_layers`` is 5 and what each freeze group holds.
"""

from __future__ import annotations

from tlkit.models.info import FreezeGroup, ModelInfo

PAPER = "LeCun, Bottou, Bengio & Haffner, Gradient-Based Learning Applied to Document Recognition, Proc. IEEE 1998"

_PAPER_OPTIONS = {"partial_c3": True, "subsampling": "trainable", "output": "rbf"}

MODELS = tuple(
    ModelInfo(
        id=model_id,
        family="lenet",
        builder="tlkit.models.lenet:LeNet5",
        paper=PAPER,
        default_size=32,
        min_size=32,
        channels=1,
        preprocessing="tf",
        feature_size=120,
        weight_layers=5,
        freeze_groups=(
            FreezeGroup("c1", r"^(c1|s2)$"),
            FreezeGroup("c3", r"^(c3|s4)$"),
            FreezeGroup("c5", r"^c5$"),
            FreezeGroup("f6", r"^(flatten|f6)$"),
        ),
        kwargs=kwargs,
        description=description,
    )
    for model_id, kwargs, description in (
        ("lenet5", {}, "LeNet-5, modern form: average pooling, full C3, softmax (61,706 params)"),
        (
            "lenet5_paper",
            _PAPER_OPTIONS,
            "LeNet-5 as the paper: C3 table, trainable subsampling, RBF output (60,840 params)",
        ),
    )
)
