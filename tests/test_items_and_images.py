"""The shared item and image machinery: content hashes, leakage and duplicates, per-image facts,
decoding errors, gated pixel reads."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from domains.common.errors import DataError
from domains.common.images import file_facts, gated_pixels, image_facts, pixel_hash, read_image, to_size
from domains.common.items import no_duplicates_in_split, no_split_leakage, stratified_split, with_item_columns


def test_leakage_flags_the_later_copy_only():
    table = pd.DataFrame(
        {"split": ["train", "test", "val", "test", "train"], "content_hash": ["a", "a", "b", "b", "c"]}
    )
    assert no_split_leakage(table).tolist() == [True, False, True, False, True]


def test_duplicates_flag_repeats_within_a_split():
    table = pd.DataFrame({"split": ["train", "train", "test", "train"], "content_hash": ["a", "a", "a", "a"]})
    assert no_duplicates_in_split(table).tolist() == [True, False, True, False]


def test_class_counts_and_shares_per_split():
    table = with_item_columns(
        pd.DataFrame({"split": ["train"] * 4 + ["test"] * 2, "label": ["a", "a", "a", "b", "a", "b"]})
    )
    assert table["class_count_in_split"].tolist() == [3, 3, 3, 1, 1, 1]
    assert table["class_share_in_split"].tolist() == [0.75, 0.75, 0.75, 0.25, 0.5, 0.5]


def test_stratified_split_is_seeded_and_keeps_every_class():
    labels = np.array(["a"] * 50 + ["b"] * 10 + ["c"] * 2)
    mask = stratified_split(labels, 0.2, seed=3)
    assert (mask == stratified_split(labels, 0.2, seed=3)).all()
    assert [int(mask[labels == c].sum()) for c in "abc"] == [10, 2, 1]


def _png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def test_read_image_gives_hwc_and_names_bad_files(tmp_path):
    grey = (np.arange(600) % 256).astype(np.uint8).reshape(20, 30)
    assert read_image(_png(tmp_path / "g.png", grey)).shape == (20, 30, 1)
    rgba = np.zeros((5, 6, 4), np.uint8)
    assert read_image(_png(tmp_path / "c.png", rgba)).shape == (5, 6, 3)  # alpha dropped
    deep = Image.fromarray((np.arange(100, dtype=np.uint16) * 600).reshape(10, 10))
    deep.save(tmp_path / "d.png")
    assert read_image(tmp_path / "d.png").dtype == np.uint16
    data = (tmp_path / "g.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "x.png").write_bytes(b"\x00\x01binary junk")
    with pytest.raises(DataError, match="t.png: image file is truncated"):
        read_image(tmp_path / "t.png")
    with pytest.raises(DataError, match="x.png: not an image"):
        read_image(tmp_path / "x.png")
    facts = file_facts(tmp_path, ["g.png", "t.png"])
    assert facts["decode_error"].tolist() == ["", "image file is truncated"]


def test_image_facts_and_content_hash():
    black = np.zeros((8, 8, 1), np.uint8)
    facts = image_facts(black)
    assert (facts["shape"], facts["pixel_std"], facts["saturated_fraction"]) == ("8x8x1", 0.0, 1.0)
    noisy = np.random.default_rng(0).integers(1, 255, (8, 8, 1)).astype(np.uint8)
    assert image_facts(noisy)["pixel_std"] > 30 and image_facts(noisy)["saturated_fraction"] == 0.0
    nan = np.full((4, 4, 1), np.nan, np.float32)
    assert image_facts(nan)["nan_pixels"] == 16
    assert pixel_hash(noisy) == pixel_hash(noisy.copy()) != pixel_hash(black)


def test_gated_pixels_refuse_an_image_changed_after_the_gate(tmp_path):
    image = np.random.default_rng(1).integers(0, 255, (6, 6)).astype(np.uint8)
    _png(tmp_path / "a.png", image)
    table = file_facts(tmp_path, ["a.png"])
    assert gated_pixels(tmp_path, table)[0].shape == (6, 6, 1)
    _png(tmp_path / "a.png", 255 - image)
    with pytest.raises(DataError, match="a.png: changed since it passed the gate"):
        gated_pixels(tmp_path, table)


def test_to_size_resizes_and_converts_channels():
    rgb = np.random.default_rng(2).integers(0, 255, (40, 30, 3)).astype(np.uint8)
    assert to_size(rgb, (16, 16), 3).shape == (3, 16, 16)
    assert to_size(rgb, (16, 16), 1).shape == (1, 16, 16)
    deep = np.full((10, 10, 1), 65535, np.uint16)
    assert to_size(deep, (10, 10), 1).max() == 255


@pytest.mark.parametrize("shape", [(64, 64, 3), (1, 1, 3), (7, 13, 3)])
def test_png_bytes_decode_to_the_same_pixels(shape):
    from io import BytesIO

    from domains.common.image_scoring import png_bytes

    rgb = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    with Image.open(BytesIO(png_bytes(rgb))) as image:
        assert image.mode == "RGB" and image.size == (shape[1], shape[0])
        assert np.array_equal(np.asarray(image), rgb)


def test_integer_image_facts_equal_the_float_computation():
    """8- and 16-bit facts come from the histogram in integers: the same numbers as on a float copy."""
    rng = np.random.default_rng(1)
    for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
        image = rng.integers(0, top + 1, (40, 30, 1)).astype(dtype)
        image[0, 0, 0], image[1, 1, 0] = 0, top  # saturated, both ends
        values = image.astype(np.float64).ravel()
        facts, scale = image_facts(image), 255.0 / top
        assert facts["pixel_min"] == 0.0 and facts["pixel_max"] == float(top)
        assert facts["pixel_mean"] == pytest.approx(values.mean() * scale, rel=1e-12)
        assert facts["pixel_std"] == pytest.approx(values.std() * scale, rel=1e-12)
        assert facts["saturated_fraction"] == np.mean((values <= 0) | (values >= top))
    assert image_facts(np.full((5, 5, 1), 9, np.uint8))["pixel_std"] == 0.0
