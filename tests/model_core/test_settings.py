import math
import subprocess
import sys

import pytest
from pydantic import ValidationError

from model_core.settings import AUTO_SIZES as AUTO_SIZES_CANDIDATES
from model_core.settings import RenderSettings, describe_validation_error, keyframe_size


def test_defaults_are_the_reference_apps():
    settings = RenderSettings()
    assert settings.model_dump() == {
        "prompt": None,
        "negative_prompt": "lowres, bad anatomy, bad hands, cropped, worst quality",
        "undo_steps": None,  # the reference's steps, filled in when the keyframe model runs (below)
        "width": "auto",  # ours: about the reference's 512x640 pixels, in the picture's aspect
        "height": "auto",
        "keyframe_steps": 50,
        "keyframe_cfg": 3.0,
        "keyframe_seed": 12345,
        "video_prompt": "1girl, masterpiece, best quality",
        "video_steps": 50,
        "video_cfg": 7.5,
        "video_seed": 123,
        "video_cache_interval": 1,  # ours: step caching off, so the job is the reference's exactly
        "fps": 4,
        "stop_after": None,  # ours: the reference's whole job
        "outputs": [],
    }
    assert settings.keyframe_undo_steps == settings.with_undo_steps().undo_steps == [400, 600, 800, 900, 950, 999]
    assert settings.frame_count == 105


INVALID = [
    ("undo_steps", []), ("undo_steps", [1000]), ("undo_steps", [-1]), ("undo_steps", [5, 5]),
    ("undo_steps", list(range(21))), ("undo_steps", "400"),
    ("width", 100), ("width", 1088), ("width", 352), ("width", 192),
    ("height", 1024 + 64), ("width", "512"), ("width", "Auto"), ("width", 512.0), ("height", True), ("height", None),
    ("keyframe_steps", 0), ("keyframe_steps", 101), ("keyframe_steps", "50"), ("keyframe_steps", 50.0),
    ("video_cache_interval", 0), ("video_cache_interval", 11), ("video_cache_interval", 2.0),
    ("keyframe_steps", True),
    ("keyframe_cfg", 0.5), ("keyframe_cfg", 33), ("keyframe_cfg", float("inf")), ("keyframe_cfg", float("nan")),
    ("keyframe_seed", -1), ("keyframe_seed", 2**32),
    ("video_steps", 0), ("video_steps", 61),
    ("video_cfg", 0.9), ("video_cfg", 15.5),
    ("video_seed", 2**32),
    ("fps", 0), ("fps", 31),
    ("prompt", 123), ("prompt", "x" * 2001),
    ("negative_prompt", None),
]  # fmt: skip


@pytest.mark.parametrize(("field", "value"), INVALID, ids=[f"{field}={value!r:.20}" for field, value in INVALID])
def test_invalid_values_are_refused_naming_the_field(field, value):
    with pytest.raises(ValidationError) as caught:
        RenderSettings(**{field: value})
    assert all(problem["loc"][0] == field for problem in caught.value.errors())
    assert describe_validation_error(caught.value).startswith(field)


def test_out_of_bounds_list_item_is_named_with_its_index():
    with pytest.raises(ValidationError) as caught:
        RenderSettings(undo_steps=[400, 600, 1000])
    assert describe_validation_error(caught.value).startswith("undo_steps.2: ")


ACCEPTED = [
    ("width", 256), ("width", 320), ("width", 1024), ("height", 256), ("height", 1024),
    ("undo_steps", list(range(0, 1000, 50))), ("undo_steps", [0]), ("undo_steps", [999]),
    ("fps", 30), ("fps", 1), ("keyframe_steps", 100), ("video_steps", 60),
    ("keyframe_seed", 0), ("keyframe_seed", 2**32 - 1), ("video_seed", 0), ("video_seed", 2**32 - 1),
    ("keyframe_cfg", 32.0), ("video_cfg", 15.0), ("prompt", "x" * 2000), ("negative_prompt", ""),
]  # fmt: skip


@pytest.mark.parametrize(("field", "value"), ACCEPTED, ids=[f"{field}={value!r:.20}" for field, value in ACCEPTED])
def test_bounds_are_accepted(field, value):
    assert getattr(RenderSettings(**{field: value}), field) == value


def test_int_guidance_becomes_a_float():
    cfg = RenderSettings(keyframe_cfg=3).keyframe_cfg
    assert cfg == 3.0 and type(cfg) is float


def test_given_undo_steps_are_kept_as_given():
    settings = RenderSettings(undo_steps=[999, 400])
    assert settings.keyframe_undo_steps == settings.with_undo_steps().undo_steps == [999, 400]
    assert settings.with_size(512, 640).keyframe_arguments("p")["undo_steps"] == [999, 400]


def test_outputs_are_distinct_kinds_and_need_a_video():
    assert RenderSettings(outputs=["frames", "preview"]).outputs == ["frames", "preview"]
    for outputs in (["preview", "preview"], ["gif"], "preview"):
        with pytest.raises(ValidationError):
            RenderSettings(outputs=outputs)
    assert RenderSettings(stop_after="keyframes").stop_after == "keyframes"
    with pytest.raises(ValidationError, match="outputs are made from the video"):
        RenderSettings(stop_after="keyframes", outputs=["preview"])
    with pytest.raises(ValidationError):
        RenderSettings(stop_after="video")


def test_frame_count_follows_the_number_of_keyframes():
    assert RenderSettings(undo_steps=[999]).frame_count == 30
    assert RenderSettings(undo_steps=list(range(20))).frame_count == 315


def test_unknown_field_is_refused_naming_it():
    with pytest.raises(ValidationError) as caught:
        RenderSettings.model_validate({"steps": 5})
    assert caught.value.errors()[0]["type"] == "extra_forbidden"
    assert describe_validation_error(caught.value).startswith("steps: ")


def test_every_problem_gets_its_own_line():
    with pytest.raises(ValidationError) as caught:
        RenderSettings(width=100, fps=0)
    lines = describe_validation_error(caught.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["width", "fps"]


def test_json_round_trip():
    settings = RenderSettings(prompt="a cat", undo_steps=[0, 999], width=1024, keyframe_cfg=4.25, video_seed=2**32 - 1)
    assert RenderSettings.model_validate_json(settings.model_dump_json()) == settings


def test_json_string_number_is_refused():
    with pytest.raises(ValidationError) as caught:
        RenderSettings.model_validate_json('{"width": "512"}')
    assert describe_validation_error(caught.value).startswith("width: ")


def test_settings_are_frozen():
    settings = RenderSettings()
    with pytest.raises(ValidationError):
        settings.width = 256
    assert settings.width == "auto"


# (picture width, height) -> automatic keyframe (width, height)
AUTO_SIZES = [
    ((512, 640), (512, 640)), ((1024, 1280), (512, 640)), ((1000, 1000), (576, 576)),
    ((960, 540), (768, 448)), ((1920, 1080), (768, 448)), ((540, 960), (448, 768)),
    ((1024, 768), (640, 512)), ((768, 1024), (512, 640)), ((3000, 100), (1024, 256)), ((100, 3000), (256, 1024)),
]  # fmt: skip


@pytest.mark.parametrize(("picture", "expected"), AUTO_SIZES)
def test_auto_size_keeps_the_pictures_aspect_at_about_the_reference_pixel_count(picture, expected):
    width, height = RenderSettings().with_size(*picture).size()
    assert (width, height) == expected
    assert width % 64 == 0 and height % 64 == 0 and 256 <= min(width, height) and max(width, height) <= 1024
    assert 0.75 <= width * height / (512 * 640) <= 1.1


def test_auto_size_picks_the_nearest_aspect_of_all_candidates():
    for picture in [(960, 540), (1000, 1000), (640, 512), (123, 457), (4000, 3000)]:
        aspect = picture[0] / picture[1]
        chosen = keyframe_size("auto", "auto", *picture)
        best = min(abs(math.log(w / h / aspect)) for w, h in AUTO_SIZES_CANDIDATES)
        assert abs(math.log(chosen[0] / chosen[1] / aspect)) == best


def test_explicit_sizes_are_kept_whatever_the_picture():
    assert RenderSettings(width=512, height=640).with_size(960, 540).size() == (512, 640)
    assert RenderSettings(width=256, height=1024).with_size(10, 10).size() == (256, 1024)
    assert RenderSettings(width=512, height=640).keyframe_arguments("x")["width"] == 512


def test_one_auto_side_follows_the_pictures_aspect_next_to_the_other():
    assert RenderSettings(width=768).with_size(960, 540).size() == (768, 448)
    assert RenderSettings(height=512).with_size(1000, 1000).size() == (512, 512)
    assert RenderSettings(width=1024).with_size(100, 3000).size() == (1024, 1024)  # clamped to the range


def test_auto_size_must_be_resolved_before_use():
    with pytest.raises(ValueError, match="auto"):
        RenderSettings().keyframe_arguments("x")
    assert RenderSettings().with_size(960, 540).keyframe_arguments("x")["width"] == 768
    with pytest.raises(ValueError):
        keyframe_size("auto", "auto", 0, 10)


def test_settings_schema_documents_auto_sides():
    width = RenderSettings.model_json_schema()["properties"]["width"]
    assert width["default"] == "auto" and "center-cropped" in width["description"]
    assert {"type": "string", "const": "auto"} in width["anyOf"]
    assert {"type": "integer", "minimum": 256, "maximum": 1024, "multipleOf": 64} in width["anyOf"]


def test_model_arguments_carry_each_field_to_its_parameter():
    settings = RenderSettings(
        negative_prompt="bad", undo_steps=[999, 400], width=256, height=384, keyframe_steps=7, keyframe_cfg=2.5,
        keyframe_seed=11, video_prompt="sketch", video_steps=9, video_cfg=6.0, video_seed=13, video_cache_interval=2,
    )  # fmt: skip
    assert settings.keyframe_arguments("1girl") == {
        "prompt": "1girl", "negative_prompt": "bad", "undo_steps": [999, 400], "width": 256, "height": 384,
        "steps": 7, "cfg": 2.5, "seed": 11,
    }  # fmt: skip
    assert settings.video_arguments() == {"prompt": "sketch", "steps": 9, "cfg": 6.0, "seed": 13, "cache_interval": 2}


def test_light_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import model_core.settings, model_core.events, model_core.progress\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
