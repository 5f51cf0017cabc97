"""The base every recipe section derives from: strict, typed, no unknown keys.

It lives below every package (it imports only pydantic), so the modules that own a section
(``tlkit.data.config``, ``tlkit.freeze.config``, ``tlkit.augment.config``, ``tlkit.train.config``,
``tlkit.models.heads``) define it without importing :mod:`tlkit.recipes`, which assembles them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A recipe section: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())
