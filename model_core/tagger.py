"""WD14 tagger: writes the prompt the keyframe model was trained with, from the picture alone.

Loads a folder in the layout of `SmilingWolf/wd-v1-4-moat-tagger-v2` (`model.onnx`,
`selected_tags.csv`) and reproduces the tag string of Paints-UNDO's `default_interrogator`.
"""

import csv
from pathlib import Path

import numpy as np
import onnxruntime
from PIL import Image

from model_core.checkpoints import resolve_checkpoint
from model_core.errors import CheckpointError
from model_core.images import check_rgb_image

TAGGER_REPO = "SmilingWolf/wd-v1-4-moat-tagger-v2"
MODEL_FILE, TAGS_FILE = "model.onnx", "selected_tags.csv"
# What a Hub download fetches: the files we load, nothing else the repo may hold.
DOWNLOADED_FILES = [MODEL_FILE, TAGS_FILE]
GENERAL_THRESHOLD = 0.35
CHARACTER_THRESHOLD = 0.85
# Tag categories in the CSV; other categories (9, ratings) are never part of the prompt.
GENERAL_CATEGORY, CHARACTER_CATEGORY = "0", "4"


class Tagger:
    """An ONNX multi-label image tagger plus its tag list."""

    def __init__(self, session: onnxruntime.InferenceSession, tags: list[tuple[str, str]]):
        self.session = session
        self.tag_names = [name for name, _ in tags]
        categories = [category for _, category in tags]
        # The general tags run from the first category-0 row up to the first category-4 row, and the
        # character tags from there to the end. An absent index means "from the start" / "to the end".
        self.general_start = categories.index(GENERAL_CATEGORY) if GENERAL_CATEGORY in categories else None
        self.character_start = categories.index(CHARACTER_CATEGORY) if CHARACTER_CATEGORY in categories else None
        model_input = session.get_inputs()[0]
        self.input_name = model_input.name
        self.size = model_input.shape[1]
        if not isinstance(self.size, int):
            raise CheckpointError(f"The tagger's input must have a fixed size (1, S, S, 3), got {model_input.shape}.")
        self.output_name = session.get_outputs()[0].name

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | Path = TAGGER_REPO,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        providers: list[str] | None = None,
    ) -> "Tagger":
        """Load from a folder holding `model.onnx` and `selected_tags.csv`, or from a Hugging Face repo id.

        providers: onnxruntime execution providers; by default CUDA when available, else CPU.
        """
        folder = resolve_checkpoint(
            path_or_repo,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            allow_patterns=DOWNLOADED_FILES,
        )
        for name in (MODEL_FILE, TAGS_FILE):
            if not (folder / name).is_file():
                raise CheckpointError(f"{folder} is not a WD14 tagger: {name} is missing.")
        with (folder / TAGS_FILE).open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))[1:]  # the first row is the header
        if any(len(row) < 3 for row in rows):
            raise CheckpointError(f"{folder / TAGS_FILE} must have the columns tag_id, name, category, count.")
        if providers is None:
            available = onnxruntime.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        session = onnxruntime.InferenceSession(str(folder / MODEL_FILE), providers=providers)
        return cls(session, [(row[1], row[2]) for row in rows])

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (1, S, S, 3) float32 BGR 0..255: fit inside S x S (Lanczos), pad with white."""
        picture = Image.fromarray(image)
        ratio = float(self.size) / max(picture.size)
        new_size = tuple(int(side * ratio) for side in picture.size)
        picture = picture.resize(new_size, Image.LANCZOS)
        square = Image.new("RGB", (self.size, self.size), (255, 255, 255))
        square.paste(picture, ((self.size - new_size[0]) // 2, (self.size - new_size[1]) // 2))
        pixels = np.array(square).astype(np.float32)[:, :, ::-1]
        return np.ascontiguousarray(pixels[None])

    def tag(self, image: np.ndarray) -> str:
        """The prompt for `image`: character tags above 0.85 then general tags above 0.35, in CSV order,
        joined with ", ", with parentheses escaped and underscores turned into spaces."""
        check_rgb_image(image)
        probabilities = self.session.run([self.output_name], {self.input_name: self.preprocess(image)})[0][0]
        tagged = list(zip(self.tag_names, probabilities, strict=True))
        general = [name for name, p in tagged[self.general_start : self.character_start] if p > GENERAL_THRESHOLD]
        character = [name for name, p in tagged[self.character_start :] if p > CHARACTER_THRESHOLD]
        # Upstream drops the tags listed in its (empty) exclusion string, which removes empty names.
        names = [name for name in character + general if name.lower() != ""]
        return ", ".join(name.replace("(", "\\(").replace(")", "\\)") for name in names).replace("_", " ")
