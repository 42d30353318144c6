"""Image inputs: load files with PIL, resize and centre-crop them to the input size, normalise, batch them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from inspectlab.core.errors import InspectlabError

if TYPE_CHECKING:
    import numpy as np
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ImageBatch:
    """The normalised N×C×H×W batch the model gets, and the cropped pictures (N×H×W×C floats in [0, 1])."""

    tensor: torch.Tensor
    pictures: np.ndarray
    paths: list[str]


def load_images(paths: Sequence[str], size: tuple[int, int], channels: int = 3,
                mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> ImageBatch:
    """Load each file, scale it so that it covers `size` (H, W), crop the centre, normalise with mean/std.

    `channels` 3 reads RGB, 1 reads greyscale. Several files make a batch, in the order given.
    """
    import numpy as np
    import torch

    try:
        from PIL import Image
    except ImportError:
        raise InspectlabError("--image needs Pillow: pip install pillow") from None
    if channels not in (1, 3):
        raise InspectlabError(f"--image gives 1 or 3 channels, but the input asks for {channels}")
    mean, std = _per_channel(mean, channels, "--mean"), _per_channel(std, channels, "--std")
    if any(s == 0 for s in std):
        raise InspectlabError("--std must not contain 0")
    pictures = []
    for path in paths:
        if not Path(path).is_file():
            raise InspectlabError(f"image {path} not found")
        try:
            with Image.open(path) as image:
                picture = _cover_crop(image.convert("RGB" if channels == 3 else "L"), size)
        except OSError as exc:
            raise InspectlabError(f"cannot read image {path}: {exc}") from None
        array = np.asarray(picture, dtype=np.float32) / 255.0
        pictures.append(array.reshape(size[0], size[1], channels))
    stacked = np.stack(pictures)
    normalised = (stacked - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(normalised.transpose(0, 3, 1, 2)))
    return ImageBatch(tensor, stacked, [str(p) for p in paths])


def _per_channel(values: Sequence[float], channels: int, option: str) -> tuple[float, ...]:
    values = tuple(values)
    if len(values) == 1:
        return values * channels
    if channels == 1 and len(values) == 3:  # greyscale with ImageNet statistics: their average
        return (sum(values) / 3,)
    if len(values) != channels:
        raise InspectlabError(f"{option} has {len(values)} values for {channels} channels")
    return values


def _cover_crop(image: object, size: tuple[int, int]) -> object:
    """Resize (bilinear, antialiased) so that the image covers size (H, W), then crop the centre."""
    from PIL import Image

    height, width = size
    src_width, src_height = image.size  # type: ignore[attr-defined]
    scale = max(height / src_height, width / src_width)
    new_width, new_height = max(width, round(src_width * scale)), max(height, round(src_height * scale))
    resized = image.resize((new_width, new_height), Image.Resampling.BILINEAR)  # type: ignore[attr-defined]
    left, top = (new_width - width) // 2, (new_height - height) // 2
    return resized.crop((left, top, left + width, top + height))
