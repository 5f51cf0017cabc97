import pytest
from pydantic import ValidationError

from tlkit.augment import PRESETS, AugmentConfig, augment_preset
from tlkit.augment.pca import PCAStats
from tlkit.errors import UnknownNameError, UserError


def test_defaults_enable_nothing():
    config = AugmentConfig()
    assert config.enabled_ops == []
    assert not config.any_enabled


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_validate_and_round_trip(name):
    config = augment_preset(name)
    again = AugmentConfig.model_validate(config.model_dump(mode="json"))
    assert again == config


def test_paper_presets_follow_the_papers():
    alexnet = augment_preset("paper_alexnet")
    assert alexnet.enabled_ops == ["crop", "mirror", "pca_colour"]
    assert alexnet.pca_colour.sigma == 0.1
    vgg = augment_preset("paper_vgg")
    assert vgg.enabled_ops == ["scale_jitter", "mirror", "colour_shift"]
    assert vgg.scale_jitter.resolved_range(224) == (256, 512)
    assert augment_preset("light").enabled_ops == ["crop", "mirror"]


def test_keys_beside_a_preset_override_it():
    config = AugmentConfig.model_validate({"preset": "paper_vgg", "scale_jitter": {"s_max": 256}})
    assert config.scale_jitter.enabled and config.scale_jitter.s_max == 256
    assert config.mirror.enabled


def test_relative_scale_range_follows_image_size():
    jitter = AugmentConfig.model_validate({"scale_jitter": {"enabled": True}}).scale_jitter
    assert jitter.resolved_range(32) == (37, 73)
    absolute = jitter.model_copy(update={"relative": False})
    assert absolute.resolved_range(32) == (256, 512)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"mirror": {"probability": 0.5}}, "probability"),
        ({"mirorr": {}}, "mirorr"),
        ({"mirror": {"p": 1.5}}, "less than or equal to 1"),
        ({"scale_jitter": {"s_min": 400, "s_max": 300}}, "must not exceed"),
        ({"scale_jitter": {"s_min": 100}}, "at least 224"),
        ({"colour_shift": {"max_offset": -1}}, "greater than or equal to 0"),
        ({"backend": "albumentations"}, "needs an 'albumentations' pipeline"),
        ({"albumentations": [{"name": "HorizontalFlip"}]}, "backend: albumentations"),
        (
            {"backend": "albumentations", "albumentations": "p.json", "crop": {"enabled": True}},
            "disable crop",
        ),
        ({"preset": "paper_alexnett"}, "Did you mean 'paper_alexnet'"),
        ({"device": "gpu"}, "'pipeline' or 'model'"),
        ({"pca_colour": {"stats": {"eigvals": [1, 2], "eigvecs": [[1, 0, 0]] * 3}}}, "at least 3"),
    ],
)
def test_validation_errors_name_the_problem(data, fragment):
    with pytest.raises(ValidationError) as info:
        AugmentConfig.model_validate(data)
    assert fragment in str(info.value)


def test_unknown_preset_function_suggests():
    with pytest.raises(UnknownNameError, match="paper_vgg"):
        augment_preset("paper_vg")


def test_bad_override_is_a_user_error():
    with pytest.raises(UserError):
        augment_preset("light", mirror={"p": 2})


def test_albumentations_shorthand():
    config = AugmentConfig.model_validate(
        {"backend": "albumentations", "albumentations": [{"name": "HorizontalFlip"}]}
    )
    assert config.albumentations.pipeline[0].name == "HorizontalFlip"
    bare = AugmentConfig.model_validate({"backend": "albumentations", "albumentations": ["Blur"]})
    assert bare.albumentations.pipeline[0].name == "Blur"
    assert (
        AugmentConfig.model_validate(
            {"backend": "albumentations", "albumentations": "pipe.json"}
        ).albumentations.pipeline
        == "pipe.json"
    )


def test_pca_stats_go_into_the_config():
    import numpy as np

    stats = PCAStats(np.array([3.0, 2.0, 1.0]), np.eye(3), np.array([0.5, 0.5, 0.5]), 10)
    config = augment_preset("paper_alexnet")
    assert config.needs_pca_stats
    filled = config.with_pca_stats(stats)
    assert not filled.needs_pca_stats
    assert PCAStats.from_dict(filled.pca_colour.stats).to_dict() == stats.to_dict()
    assert AugmentConfig.model_validate(filled.model_dump(mode="json")) == filled
