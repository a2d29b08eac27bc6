import numpy as np
import pytest

from model_core.errors import CheckpointError, InvalidInputError
from model_core.tagger import Tagger
from model_core.tiny import TINY_TAGGER_SIZE, TINY_TAGS, write_tiny_tagger


def tagger_with(tmp_path, probabilities: dict[str, float]) -> Tagger:
    """A tiny tagger whose output is the given probability for each named tag and 0.1 for the rest."""
    values = [probabilities.get(name, 0.1) for name, _ in TINY_TAGS]
    return Tagger.from_pretrained(write_tiny_tagger(tmp_path / "tagger", probabilities=values))


def test_thresholds_order_and_formatting(tmp_path, picture):
    tagger = tagger_with(
        tmp_path,
        {
            "general": 0.99,  # a rating: never part of the prompt
            "solo": 0.36,
            "long_hair": 0.9,
            "smile": 0.34,  # below the general threshold
            "hat_(object)": 0.5,
            "hatsune_miku": 0.84,  # below the character threshold
            "ganyu_(genshin_impact)": 0.86,
            "rem_(re:zero)": 0.95,
        },
    )
    # Characters first, then general tags, each in CSV order (not by probability); parentheses
    # escaped; every underscore becomes a space.
    assert tagger.tag(picture) == "ganyu \\(genshin impact\\), rem \\(re:zero\\), solo, long hair, hat \\(object\\)"


def test_nothing_above_threshold_gives_an_empty_prompt(tmp_path, picture):
    assert tagger_with(tmp_path, {}).tag(picture) == ""


def test_preprocessing_fits_the_picture_on_a_white_square_in_bgr_order(tagger_checkpoint):
    tagger = Tagger.from_pretrained(tagger_checkpoint)
    red = np.zeros((40, 80, 3), np.uint8)
    red[..., 0] = 255
    batch = tagger.preprocess(red)
    assert batch.shape == (1, TINY_TAGGER_SIZE, TINY_TAGGER_SIZE, 3) and batch.dtype == np.float32
    middle, top = batch[0, TINY_TAGGER_SIZE // 2, TINY_TAGGER_SIZE // 2], batch[0, 0, 0]
    assert middle.tolist() == [0.0, 0.0, 255.0]  # red, as BGR
    assert top.tolist() == [255.0, 255.0, 255.0]  # white padding above the wide picture


def test_random_weights_tag_different_pictures_differently(tagger_checkpoint, picture):
    tagger = Tagger.from_pretrained(tagger_checkpoint)
    tags = {tagger.tag(image) for image in (picture, 255 - picture, np.full((50, 50, 3), 255, np.uint8))}
    assert len(tags) == 3
    assert tagger.tag(picture) == tagger.tag(picture.copy())


def test_bad_images_and_folders_are_refused(tagger_checkpoint, tmp_path):
    tagger = Tagger.from_pretrained(tagger_checkpoint)
    with pytest.raises(InvalidInputError, match="dtype uint8"):
        tagger.tag(np.zeros((8, 8, 3), np.float64))
    with pytest.raises(CheckpointError, match="selected_tags.csv is missing"):
        (tmp_path / "model.onnx").write_bytes((tagger_checkpoint / "model.onnx").read_bytes())
        Tagger.from_pretrained(tmp_path)
