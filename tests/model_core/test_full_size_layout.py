"""The full-size networks have exactly the tensors of the published checkpoint, so real weights will load.

`tests/data/paints_undo_single_frame_layout.json` lists every tensor name and shape that the
reference implementation's single-frame model saves (its state_dict at the published SD1.5 sizes,
built on the meta device), which is what `lllyasviel/paints_undo_single_frame` holds.
"""

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

from model_core import configs
from model_core.clip import CLIPTextConfig, CLIPTextModel
from model_core.unet2d import KeyframeUNet

LAYOUT = json.loads((Path(__file__).parents[1] / "data" / "paints_undo_single_frame_layout.json").read_text())

# (tensor count, parameter count) of the published single-frame checkpoint's components.
PUBLISHED_SIZES = {
    "unet": (690, 861_501_124),
    "text_encoder": (180, 115_972_608),
    "vae": (248, 83_653_863),
}

BUILDERS = {
    "unet": lambda: KeyframeUNet(**configs.KEYFRAME_UNET),
    "text_encoder": lambda: CLIPTextModel(CLIPTextConfig.from_dict(configs.KEYFRAME_TEXT_ENCODER)),
    "vae": lambda: AutoencoderKL(**configs.KEYFRAME_VAE),
}


@pytest.mark.parametrize("component", sorted(BUILDERS))
def test_full_size_component_matches_the_published_layout(component):
    with torch.device("meta"):
        module = BUILDERS[component]()
    state_dict = module.state_dict()
    assert {key: list(value.shape) for key, value in state_dict.items()} == LAYOUT[component]
    tensors, parameters = PUBLISHED_SIZES[component]
    assert len(state_dict) == tensors
    assert sum(value.numel() for value in state_dict.values()) == parameters
