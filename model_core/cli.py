"""`paints-undo`: command-line front end of model_core.

    paints-undo render IMAGE -o OUT.mp4 [--tiny]      the drawing process of a picture, as an MP4
    paints-undo render IMAGE -o OUT.mp4 --keyframes EARLY.png LATER.png
                                                      ... through the artist's own snapshots
    paints-undo keyframes IMAGE -o OUT_DIR [--tiny]   earlier states of a picture, as PNGs
    paints-undo tag IMAGE [--tiny]                     the prompt the tagger writes for a picture

Every keyframe PNG says how it was made (prompt, undo step, seeds, models) as PNG text. With a C2PA signing
certificate chain and key (--c2pa-cert/--c2pa-key, or PAINTS_UNDO_C2PA_CERT/PAINTS_UNDO_C2PA_KEY), every
MP4, WebP preview and keyframe PNG written also carries signed Content Credentials saying it is AI-generated.

Models: the published Hugging Face repos by default, `--model-dir` a folder in their layout, or
`--tiny`, the tiny preset (`model_core.tiny`): random-weight checkpoints written to a temporary
folder, so the video is noise. It only exercises the code (tests, demos, CI) and is used only when
asked for; nothing falls back to it. It needs the `tiny` extra: pip install '.[tiny]'.

Exit codes: 0 success, 1 the render failed (ffmpeg could not write the video, say),
2 bad arguments, settings, input or signing credentials (or an unwritable output), 3 a checkpoint
could not be loaded, 130 interrupted.
"""

import argparse
import json
import os
import sys
import tempfile
import time
import types
import typing
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import ValidationError
from tqdm import tqdm

from model_core.configs import TINY_BUCKETS
from model_core.credentials import ContentCredentials
from model_core.devices import pick_device, pick_dtype
from model_core.errors import CheckpointError, CredentialsError, InvalidInputError, ModelCoreError
from model_core.events import KeyframeReady, PromptReady, RenderEvent, Stage, StageFinished, StepFinished
from model_core.images import read_image
from model_core.interpolation import BUCKETS
from model_core.keyframes import KeyframeModel
from model_core.outputs import OUTPUT_FILES, write_outputs
from model_core.pipeline import PaintsUndoPipeline, RenderResult, check_supplied_keyframes
from model_core.provenance import Provenance, source_picture
from model_core.samplers import SamplerStep
from model_core.settings import RenderSettings, describe_validation_error, keyframe_size
from model_core.sources import TINY_MODEL, ModelSources, fetch_model_sources, model_ids
from model_core.tagger import Tagger
from model_core.video import MP4_MEDIA_TYPE, check_mp4_path

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CHECKPOINT, EXIT_INTERRUPTED = 1, 2, 3, 130
TINY_WARNING = "--tiny: random-weight test checkpoints; the output is noise, not a drawing."
MODEL_FLAGS = ("tagger", "keyframe_model", "interpolation_model")  # each overrides one of ModelSources
DEFAULTS = RenderSettings()


def _sources(args: argparse.Namespace, scratch: Path, *models: str) -> ModelSources:
    """Local folders of `models` (ModelSources field names): the tiny preset written to `scratch`, or
    --model-dir (the published repos when absent) with per-model overrides, repo ids downloaded."""
    if args.tiny:
        return fetch_model_sources(TINY_MODEL, cache_dir=scratch)
    base = ModelSources.from_folder(args.model_dir) if args.model_dir else ModelSources()
    overrides = {name: getattr(args, name) for name in MODEL_FLAGS if getattr(args, name)}
    return replace(base, **overrides).fetch(only=models)


def _provenance(args: argparse.Namespace) -> Provenance:
    """What the files written say about their making; signed when a certificate and key are given."""
    if (args.c2pa_cert is None) != (args.c2pa_key is None):
        raise InvalidInputError("Give both --c2pa-cert and --c2pa-key (or PAINTS_UNDO_C2PA_CERT and _KEY), or neither.")
    credentials = None
    if args.c2pa_cert is not None:
        credentials = ContentCredentials.from_pem_files(args.c2pa_cert, args.c2pa_key)
    if args.tiny:
        models = model_ids(TINY_MODEL)
    else:
        base = ModelSources.from_folder(args.model_dir) if args.model_dir else ModelSources()
        models = replace(base, **{name: getattr(args, name) for name in MODEL_FLAGS if getattr(args, name)}).ids()
    try:
        picture = args.image.read_bytes()
    except OSError as error:
        raise InvalidInputError(f"Cannot read {args.image}: {error}") from error
    return Provenance(source_picture(picture, args.image.name), models, credentials)


def _tag(args: argparse.Namespace, scratch: Path) -> None:
    print(Tagger.from_pretrained(_sources(args, scratch, "tagger").tagger).tag(read_image(args.image)))


def _keyframes(args: argparse.Namespace, scratch: Path) -> None:
    image = read_image(args.image)
    provenance = _provenance(args)
    sources = _sources(args, scratch, "tagger", "keyframe_model")
    device = pick_device(args.device)
    model = KeyframeModel.from_pretrained(sources.keyframe_model, device=device, dtype=pick_dtype(args.dtype, device))
    prompt = args.prompt if args.prompt is not None else Tagger.from_pretrained(sources.tagger).tag(image)
    print(f"prompt: {prompt}", file=sys.stderr)
    width, height = keyframe_size(args.width, args.height, image.shape[1], image.shape[0])
    print(f"keyframes: {width}x{height}", file=sys.stderr)
    with tqdm(total=args.steps, desc="keyframes", unit="step") as bar:

        def advance(step: SamplerStep) -> None:
            bar.update(1)

        keyframes = model.generate(
            image,
            prompt=prompt,
            negative_prompt=args.negative_prompt,
            undo_steps=args.undo_steps,
            width=width,
            height=height,
            steps=args.steps,
            cfg=args.cfg,
            seed=args.seed,
            callback=advance,
        )
    args.output.mkdir(parents=True, exist_ok=True)
    settings = RenderSettings(
        negative_prompt=args.negative_prompt, keyframe_steps=args.steps, keyframe_cfg=args.cfg, keyframe_seed=args.seed
    )
    for index, (undo_step, keyframe) in enumerate(zip(args.undo_steps, keyframes, strict=True)):
        png = provenance.keyframe_png(keyframe, settings, prompt, undo_step)
        print(_save_keyframe(args.output, index, undo_step, png))


def _save_keyframe(folder: Path, index: int, undo_step: int, png: bytes) -> Path:
    path = folder / f"keyframe_{index:02d}_undo{undo_step:03d}.png"
    path.write_bytes(png)
    return path


def _render_settings(args: argparse.Namespace) -> RenderSettings:
    """RenderSettings defaults, then --settings, then each flag given."""
    values: dict[str, Any] = {}
    if args.settings is not None:
        text = args.settings if args.settings.lstrip().startswith("{") else _read_text(Path(args.settings))
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidInputError(f"--settings is not valid JSON: {error}") from error
        if not isinstance(values, dict):
            raise InvalidInputError("--settings must be a JSON object of RenderSettings fields.")
    values |= {name: getattr(args, name) for name in RenderSettings.model_fields if hasattr(args, name)}
    try:
        return RenderSettings.model_validate(values)
    except ValidationError as error:
        raise InvalidInputError(f"invalid settings:\n{describe_validation_error(error)}") from error


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as error:
        raise InvalidInputError(f"Cannot read the settings file {path}: {error}") from error


class _ProgressDisplay:
    """A progress bar per stage, the overall ETA beside it, and each keyframe saved as it arrives."""

    def __init__(self, keyframe_folder: Path, settings: RenderSettings, provenance: Provenance):
        self.keyframe_folder = keyframe_folder
        self.settings = settings
        self.provenance = provenance
        self.prompt = settings.prompt or ""
        self.bar: tqdm | None = None

    def __call__(self, event: RenderEvent) -> None:
        if isinstance(event, StepFinished):
            if self.bar is None:
                unit = "frame" if event.stage is Stage.ENCODING else "step"
                self.bar = tqdm(total=event.total, desc=str(event.stage), unit=unit, file=sys.stderr)
            self.bar.update(event.step - self.bar.n)
            if event.eta_seconds is not None:
                self.bar.set_postfix_str(f"{event.progress:.0%} of the job, about {event.eta_seconds:.0f} s left")
        elif isinstance(event, StageFinished) and self.bar is not None:
            self.bar.close()
            self.bar = None
        elif isinstance(event, PromptReady):
            self.prompt = event.prompt
            tqdm.write(f"prompt: {event.prompt}", file=sys.stderr)
        elif isinstance(event, KeyframeReady):
            png = self.provenance.keyframe_png(event.image, self.settings, self.prompt, event.undo_step)
            path = _save_keyframe(self.keyframe_folder, event.index, event.undo_step, png)
            tqdm.write(f"keyframe: {path}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _render(args: argparse.Namespace, scratch: Path) -> None:
    settings = _render_settings(args)
    video_wanted = settings.stop_after != "keyframes"
    check_mp4_path(args.output)
    image = read_image(args.image)
    supplied = [read_image(path) for path in args.keyframes] if args.keyframes else None
    check_supplied_keyframes(supplied, settings)
    provenance = _provenance(args)
    started = time.monotonic()
    options = {"device": args.device, "dtype": args.dtype, "low_memory": args.low_memory, "compile": args.compile}
    buckets = TINY_BUCKETS if args.tiny else BUCKETS  # the tiny models run fast at small clip sizes
    sources = _sources(args, scratch, "tagger", "keyframe_model", "interpolation_model")
    pipeline = PaintsUndoPipeline.from_pretrained(sources, buckets=buckets, **options)
    print(f"models loaded in {time.monotonic() - started:.1f} s", file=sys.stderr)

    keyframe_folder = args.output.with_name(f"{args.output.stem}_keyframes")
    try:
        keyframe_folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InvalidInputError(f"Cannot write beside {args.output}: {error}") from error

    display = _ProgressDisplay(keyframe_folder, settings, provenance)
    try:
        output = args.output if video_wanted else None
        result = pipeline.render(image, output, settings, keyframes=supplied, on_event=display)
    finally:
        display.close()
    if result.video is None:
        print(f"stopped after the keyframes: {keyframe_folder}", file=sys.stderr)
        print(keyframe_folder)
        return
    provenance.sign_file(result.video, MP4_MEDIA_TYPE)
    # The outputs asked for, beside the video: OUT_preview.webp and OUT_frames.zip.
    outputs = write_outputs(
        result.frames, args.output.parent, settings.outputs, fps=result.fps, prefix=f"{args.output.stem}_"
    )
    for kind, path in outputs.items():
        provenance.sign_file(path, OUTPUT_FILES[kind][1])
        print(f"{kind}: {path}", file=sys.stderr)
    _print_summary(result, time.monotonic() - started)


def _print_summary(result: RenderResult, seconds: float) -> None:
    assert result.frames is not None
    frames = len(result.frames)
    print(
        f"{result.video}: {frames} frames, {result.width}x{result.height}, {result.fps} fps "
        f"({frames / result.fps:.2f} s of video), made in {seconds:.0f} s",
        file=sys.stderr,
    )
    print(result.video)


def _flag_type(annotation: Any) -> Any:
    """How a RenderSettings field is read from the command line (lists: comma-separated)."""
    present = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(present) == 1:
        annotation = present[0]  # an optional value: absent, or given
    annotation = _without_metadata(annotation)
    if annotation in (int, float):
        return annotation
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        convert = int if _without_metadata(item) is int else str
        return lambda text: [convert(part.strip()) for part in text.split(",")]
    if int in typing.get_args(annotation):  # width, height: pixels or "auto"
        return _side
    return str


def _without_metadata(annotation: Any) -> Any:
    """`Annotated[X, ...]` -> X."""
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is Annotated else annotation


def _side(text: str) -> int | str:
    return text if text == "auto" else int(text)


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("render settings (RenderSettings; flags override --settings)")
    group.add_argument("--settings", help="RenderSettings as a JSON object, or the path of a JSON file holding one")
    for name, field in RenderSettings.model_fields.items():
        default = field.default
        if isinstance(default, list):
            default = ",".join(map(str, default)) or "none"
        group.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=_flag_type(field.annotation),
            default=argparse.SUPPRESS,
            help=f"{field.description} Default: {default}.",
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paints-undo", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("image", type=Path, help="the finished picture (PNG, JPEG, WebP, ...)")
    models = common.add_argument_group("models (Hugging Face repo ids by default)")
    models.add_argument(
        "--tiny",
        action="store_true",
        help="the tiny preset: random-weight checkpoints (model_core.tiny), so the video is noise; "
        "for tests and demos, never a fallback. Needs the `tiny` extra (pip install '.[tiny]')",
    )
    models.add_argument(
        "--model-dir",
        type=Path,
        help="folder holding wd-v1-4-moat-tagger-v2/, paints_undo_single_frame/ and paints_undo_multi_frame/",
    )
    models.add_argument("--tagger", help="tagger folder or repo id (overrides --model-dir)")
    models.add_argument("--keyframe-model", help="keyframe model folder or repo id (overrides --model-dir)")
    models.add_argument("--interpolation-model", help="interpolation model folder or repo id (overrides --model-dir)")
    models.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu' or 'cuda[:N]'")
    models.add_argument("--dtype", default="auto", help="'auto' (bfloat16 on CUDA, float32 on CPU), or a dtype name")
    credentials = common.add_argument_group("content credentials (C2PA)")
    credentials.add_argument(
        "--c2pa-cert",
        type=Path,
        default=os.environ.get("PAINTS_UNDO_C2PA_CERT"),
        help="PEM certificate chain, signing certificate first (default: $PAINTS_UNDO_C2PA_CERT); with --c2pa-key, "
        "every file written carries a signed C2PA manifest saying it is AI-generated",
    )
    credentials.add_argument(
        "--c2pa-key", type=Path, default=os.environ.get("PAINTS_UNDO_C2PA_KEY"), help="its PEM private key"
    )

    commands.add_parser("tag", parents=[common], help="print the prompt the tagger writes for IMAGE")

    render = commands.add_parser("render", parents=[common], help="write the drawing process of IMAGE as an MP4")
    render.add_argument(
        "-o", "--output", type=Path, required=True, help="the .mp4 to write; keyframe PNGs go to OUT_keyframes/"
    )
    render.add_argument(
        "--low-memory", action="store_true", help="offload idle models to CPU memory, one clip at a time (12 GB GPUs)"
    )
    render.add_argument("--compile", action="store_true", help="torch.compile both UNets (pays off on long runs)")
    render.add_argument(
        "--keyframes",
        nargs="+",
        type=Path,
        metavar="SNAPSHOT",
        help="the artist's own earlier states of IMAGE, earliest first, instead of the keyframe model's (then "
        "--undo-steps must be absent); each is cropped to the keyframe size like IMAGE",
    )
    _add_settings_flags(render)

    keyframes = commands.add_parser("keyframes", parents=[common], help="write earlier states of IMAGE as PNGs")
    keyframes.add_argument("-o", "--output", type=Path, required=True, help="folder for the keyframe PNGs")
    keyframes.add_argument("--prompt", default=None, help="prompt (default: written by the tagger)")
    keyframes.add_argument("--negative-prompt", default=DEFAULTS.negative_prompt)
    keyframes.add_argument(
        "--undo-steps",
        type=_flag_type(list[int]),
        default=DEFAULTS.keyframe_undo_steps,
        help="comma-separated operation steps 0..999 (default: 400,600,800,900,950,999)",
    )
    size_help = (
        '"auto" (default): about 512x640 pixels with the aspect ratio nearest the picture\'s; the picture is '
        "center-cropped to the keyframes' aspect"
    )
    keyframes.add_argument("--width", type=_side, default=DEFAULTS.width, help=size_help)
    keyframes.add_argument("--height", type=_side, default=DEFAULTS.height, help=size_help)
    keyframes.add_argument("--steps", type=int, default=DEFAULTS.keyframe_steps)
    keyframes.add_argument("--cfg", type=float, default=DEFAULTS.keyframe_cfg)
    keyframes.add_argument("--seed", type=int, default=DEFAULTS.keyframe_seed)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.tiny:
        print(TINY_WARNING, file=sys.stderr)
    try:
        with tempfile.TemporaryDirectory(prefix="paints-undo-tiny-") as scratch:
            command = {"tag": _tag, "keyframes": _keyframes, "render": _render}[args.command]
            command(args, Path(scratch))
    except InvalidInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CHECKPOINT
    except CredentialsError as error:
        print(f"error: --c2pa-cert/--c2pa-key: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModelCoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
