import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tlkit.augment import augment_preset, build_augmenter, preview_grid
from tlkit.augment.preview import load_preview_images
from tlkit.cli.augment import augment


def test_preview_grid_writes_a_png(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, [3, 20, 20, 3], dtype=np.uint8)
    aug = build_augmenter(augment_preset("light"), image_size=16)
    out = preview_grid(images, aug, out_path=tmp_path / "sub" / "grid.png", columns=4)
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size[0] > png.size[1]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_load_images_from_class_folders(tmp_path):
    for cls, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("RGB", (30, 20), colour).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "cats" / "broken.jpg").write_bytes(b"not an image")
    images = load_preview_images(str(tmp_path), n=3, size=24)
    assert images.shape == (3, 24, 24, 3)
    assert images[0, 0, 0, 0] == 255 and images[1, 0, 0, 2] == 255  # one class, then the next


def test_cli_preview_builtin_digits(tmp_path):
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(
        augment,
        ["preview", "--data", "builtin:digits", "--preset", "paper_alexnet", "--out", str(out)]
        + ["--n", "2", "--columns", "3", "--image-size", "16", "--set", "mirror.p=1.0"],
    )
    assert result.exit_code == 0, result.output
    assert out.is_file()
    assert "pca_colour" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "/no/such/folder"], "not a folder"),
        (["--data", "builtin:cifar"], "builtin:digits"),
        (["--data", "builtin:digits", "--preset", "strongg"], "Did you mean 'strong'"),
        (["--data", "builtin:digits", "--set", "mirror.q=1"], "mirror.q"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path, args, message):
    result = CliRunner().invoke(augment, ["preview", "--out", str(tmp_path / "g.png"), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "g.png").exists()


def test_without_augmentation_the_preview_shows_the_originals_once(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, [3, 20, 20, 3], dtype=np.uint8)
    aug = build_augmenter(augment_preset("light"), image_size=16)
    six = preview_grid(images, aug, out_path=tmp_path / "six.png", columns=6)
    once = preview_grid(images, None, out_path=tmp_path / "once.png", columns=6,
                        title="no augmentation enabled", row_labels=["a", "b", "c"])
    with Image.open(six) as a, Image.open(once) as b:
        assert b.size[0] < 0.7 * a.size[0]  # one column of originals, not six identical copies


def test_preview_rows_are_labelled_with_their_class(tmp_path):
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (30, 20), (90, 90, 90)).save(tmp_path / cls / "0.png")
    images, labels = load_preview_images(str(tmp_path), n=2, size=24, with_labels=True)
    assert images.shape == (2, 24, 24, 3) and labels == ["cats", "dogs"]
