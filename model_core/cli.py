"""`paints-undo`: command-line front end of model_core.

    paints-undo keyframes IMAGE -o OUT_DIR [--tiny]   earlier states of a picture, as PNGs
    paints-undo tag IMAGE [--tiny]                     the prompt the tagger writes for a picture

Exit codes: 0 success, 2 bad arguments or input, 3 a checkpoint could not be loaded.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from model_core.errors import CheckpointError, InvalidInputError
from model_core.keyframes import KEYFRAME_REPO, KeyframeModel
from model_core.samplers import SamplerStep
from model_core.tagger import TAGGER_REPO, Tagger
from model_core.testing import write_tiny_keyframe_checkpoint, write_tiny_tagger

EXIT_BAD_INPUT, EXIT_CHECKPOINT = 2, 3
DEFAULT_UNDO_STEPS = [400, 600, 800, 900, 950, 999]
DEFAULT_NEGATIVE_PROMPT = "lowres, bad anatomy, bad hands, cropped, worst quality"
TINY_WARNING = "--tiny: random-weight test checkpoints; the output is noise, not a drawing."


def _read_image(path: Path) -> np.ndarray:
    """RGB uint8 array of an image file, upright per its EXIF orientation, alpha dropped."""
    try:
        with Image.open(path) as image:
            return np.array(ImageOps.exif_transpose(image).convert("RGB"))
    except (OSError, UnidentifiedImageError) as error:
        raise InvalidInputError(f"Cannot read {path} as an image: {error}") from error


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _load(args: argparse.Namespace, scratch: Path) -> tuple[KeyframeModel | None, Tagger]:
    """Load the tagger, and the keyframe model when the command needs it."""
    if args.tiny:
        print(TINY_WARNING, file=sys.stderr)
    tagger = Tagger.from_pretrained(write_tiny_tagger(scratch / "tagger") if args.tiny else args.tagger)
    if args.command != "keyframes":
        return None, tagger
    device = _device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    source = write_tiny_keyframe_checkpoint(scratch / "keyframe") if args.tiny else args.keyframe_model
    return KeyframeModel.from_pretrained(source, device=device, dtype=dtype), tagger


def _keyframes(args: argparse.Namespace, model: KeyframeModel, tagger: Tagger) -> None:
    image = _read_image(args.image)
    prompt = args.prompt if args.prompt is not None else tagger.tag(image)
    print(f"prompt: {prompt}", file=sys.stderr)
    with tqdm(total=args.steps, desc="keyframes", unit="step") as bar:

        def advance(step: SamplerStep) -> None:
            bar.update(1)

        keyframes = model.generate(
            image,
            prompt=prompt,
            negative_prompt=args.negative_prompt,
            undo_steps=args.undo_steps,
            width=args.width,
            height=args.height,
            steps=args.steps,
            cfg=args.cfg,
            seed=args.seed,
            callback=advance,
        )
    args.output.mkdir(parents=True, exist_ok=True)
    for index, (undo_step, keyframe) in enumerate(zip(args.undo_steps, keyframes, strict=True)):
        path = args.output / f"keyframe_{index:02d}_undo{undo_step:03d}.png"
        Image.fromarray(keyframe).save(path)
        print(path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paints-undo", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("image", type=Path, help="the finished picture (PNG, JPEG, WebP, ...)")
    common.add_argument("--tiny", action="store_true", help="use generated random-weight test checkpoints")
    common.add_argument("--tagger", default=TAGGER_REPO, help="tagger folder or Hugging Face repo id")
    common.add_argument("--keyframe-model", default=KEYFRAME_REPO, help="keyframe model folder or repo id")
    common.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu' or 'cuda[:N]'")

    commands.add_parser("tag", parents=[common], help="print the prompt the tagger writes for IMAGE")
    keyframes = commands.add_parser("keyframes", parents=[common], help="write earlier states of IMAGE as PNGs")
    keyframes.add_argument("-o", "--output", type=Path, required=True, help="folder for the keyframe PNGs")
    keyframes.add_argument("--prompt", default=None, help="prompt (default: written by the tagger)")
    keyframes.add_argument("--negative-prompt", default=DEFAULT_NEGATIVE_PROMPT)
    keyframes.add_argument(
        "--undo-steps",
        type=lambda text: [int(step) for step in text.split(",")],
        default=DEFAULT_UNDO_STEPS,
        help="comma-separated operation steps 0..999 (default: 400,600,800,900,950,999)",
    )
    keyframes.add_argument("--width", type=int, default=512)
    keyframes.add_argument("--height", type=int, default=640)
    keyframes.add_argument("--steps", type=int, default=50)
    keyframes.add_argument("--cfg", type=float, default=3.0)
    keyframes.add_argument("--seed", type=int, default=12345)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="paints-undo-tiny-") as scratch:
            model, tagger = _load(args, Path(scratch))
            if args.command == "tag":
                print(tagger.tag(_read_image(args.image)))
            else:
                _keyframes(args, model, tagger)
    except InvalidInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CHECKPOINT
    return 0


if __name__ == "__main__":
    sys.exit(main())
