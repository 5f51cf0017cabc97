"""keras.applications' families as registry entries, from :mod:`tlkit.models.applications_data`.

One entry a member, under its keras.applications function name in lower case; built by
:mod:`tlkit.models.applications` (``BUILDERS``), registered after the classic families.
"""

from __future__ import annotations

from tlkit.models.applications_data import FAMILIES, AppFamily, AppMember
from tlkit.models.info import FreezeGroup, ModelInfo
from tlkit.weights import OfficialWeights


def official_weights(member: AppMember, family: AppFamily) -> OfficialWeights:
    """Where keras.applications keeps ``member``'s ImageNet files (loaded by position)."""
    return OfficialWeights(top=member.top, notop=member.notop, base_url=family.base_url,
                           by_position=True)


def model_info(member: AppMember, family: AppFamily) -> ModelInfo:
    groups = member.groups or family.groups
    return ModelInfo(
        id=member.id,
        family=family.id,
        builder=f"tlkit.models.applications:BUILDERS.{member.function}",
        paper=family.paper,
        default_size=member.size,
        min_size=family.min_size,
        preprocessing=family.preprocessing,
        preprocessing_inside=family.inside,
        feature_size=member.features,
        weight_layers=member.weight_layers,
        freeze_groups=tuple(
            FreezeGroup(group, pattern.replace("{name}", member.keras_name))
            for group, pattern in groups
        ),
        unit_pattern=family.unit,
        official_weights=official_weights(member, family),
        kwargs=dict(family.kwargs),
        aliases=(member.keras_name,) if member.keras_name else (),
        description=f"keras.applications.{member.function}",
    )


MODELS = tuple(model_info(member, family) for family in FAMILIES for member in family.members)
