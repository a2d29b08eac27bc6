"""The full-size networks have exactly the tensors of the published checkpoints, so real weights will load.

`tests/data/paints_undo_{single,multi}_frame_layout.json` list every tensor name and shape that the
reference implementation's models save (their state_dicts at the published sizes, built on the
meta device from the reference's classes), which is what `lllyasviel/paints_undo_single_frame`
and `lllyasviel/paints_undo_multi_frame` hold. The sizes are the reference's inferred configs
(`model_core.configs`); a real checkpoint's config.json files override them.
"""

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

from model_core import configs
from model_core.clip import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection
from model_core.resampler import Resampler
from model_core.unet2d import KeyframeUNet
from model_core.unet3d import InterpolationUNet
from model_core.video_vae import VideoAutoencoder

DATA = Path(__file__).parents[1] / "data"
LAYOUTS = {
    "single_frame": json.loads((DATA / "paints_undo_single_frame_layout.json").read_text()),
    "multi_frame": json.loads((DATA / "paints_undo_multi_frame_layout.json").read_text()),
}

# (tensor count, parameter count) of each published component.
PUBLISHED_SIZES = {
    ("single_frame", "unet"): (690, 861_501_124),
    ("single_frame", "text_encoder"): (180, 115_972_608),
    ("single_frame", "vae"): (248, 83_653_863),
    ("multi_frame", "unet"): (1516, 1_438_854_980),
    ("multi_frame", "vae"): (396, 99_941_907),
    ("multi_frame", "text_encoder"): (372, 340_387_840),
    ("multi_frame", "image_encoder"): (520, 632_076_800),
    ("multi_frame", "image_projection"): (52, 48_790_016),
}

BUILDERS = {
    ("single_frame", "unet"): lambda: KeyframeUNet(**configs.KEYFRAME_UNET),
    ("single_frame", "text_encoder"): lambda: CLIPTextModel(CLIPTextConfig.from_dict(configs.KEYFRAME_TEXT_ENCODER)),
    ("single_frame", "vae"): lambda: AutoencoderKL(**configs.KEYFRAME_VAE),
    ("multi_frame", "unet"): lambda: InterpolationUNet.from_config(configs.INTERPOLATION_UNET),
    ("multi_frame", "vae"): lambda: VideoAutoencoder.from_config(configs.INTERPOLATION_VAE),
    ("multi_frame", "text_encoder"): lambda: CLIPTextModel(
        CLIPTextConfig.from_dict(configs.INTERPOLATION_TEXT_ENCODER)
    ),
    ("multi_frame", "image_encoder"): lambda: CLIPVisionModelWithProjection(
        CLIPVisionConfig.from_dict(configs.INTERPOLATION_IMAGE_ENCODER)
    ),
    ("multi_frame", "image_projection"): lambda: Resampler.from_config(configs.INTERPOLATION_IMAGE_PROJECTION),
}


@pytest.mark.parametrize(("model", "component"), sorted(BUILDERS))
def test_full_size_component_matches_the_published_layout(model, component):
    with torch.device("meta"):
        module = BUILDERS[model, component]()
    state_dict = module.state_dict()
    assert {key: list(value.shape) for key, value in state_dict.items()} == LAYOUTS[model][component]
    tensors, parameters = PUBLISHED_SIZES[model, component]
    assert len(state_dict) == tensors
    assert sum(value.numel() for value in state_dict.values()) == parameters
