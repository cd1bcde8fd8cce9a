"""Avatars: a square face crop of a photo (local), optionally registered with D-ID.

The local avatar is a 512 px PNG cropped around the largest face OpenCV's bundled Haar cascade
finds (a centre crop when it finds none, with a ``no_face_found`` warning on the job). Where the mouth sits is written into the PNG as a text
chunk (``conveyor:mouth``), so the local talking-video provider knows what to animate.

Avatar ids are strings:

- ``storage:<key>``: a local avatar PNG.
- ``{"provider": "did", "source_url": "...", "image": "storage:<key>"}``: the photo uploaded to
  D-ID (``POST /images``), with the local crop kept for the local talking-video provider.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from actors.context import current_stage
from actors.errors import InvalidInput, InvalidMedia
from actors.files.keys import is_ref
from actors.files.storage import store_output
from actors.providers import LOCAL, missing_modules, pick
from actors.providers.remote import answered, http_client, require_secret, saved_or_new, upload_file
from conveyor.config import settings

AVATAR_SIZE = 512  #: px, a multiple of 16 so frames encode without resizing
DETECT_SIDE = 640  #: px; photos are scaled down to this for face detection
MAX_PIXELS = 50_000_000  #: larger images are refused (decompression bombs)
FACE_MARGIN = 1.9  #: the crop's side, in face widths
NO_FACE_FOUND = "no_face_found"  #: the warning of a local avatar made from a photo with no face found
_MOUTH_KEY = "conveyor:mouth"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MouthSpot:
    """Where the mouth is in an avatar, as fractions of its width and height."""

    x: float = 0.5
    y: float = 0.72
    width: float = 0.2


@cache
def _cascade() -> Any:
    """OpenCV's bundled frontal-face Haar cascade, or None when this OpenCV has none.

    opencv-python(-headless) 4.x ships the cascade files; 5.x dropped them and the class.
    """
    import cv2

    folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
    path = Path(folder) / "haarcascade_frontalface_default.xml"
    if not hasattr(cv2, "CascadeClassifier") or not path.is_file():
        logger.warning("OpenCV %s has no Haar face cascade (use opencv-python-headless<5): "
                       "avatars fall back to centre crops", cv2.__version__)
        return None
    return cv2.CascadeClassifier(str(path))


def open_photo(path: Path) -> Image.Image:
    """The photo as RGB, upright per its EXIF orientation.

    Raises:
      InvalidMedia: when the file is not an image Pillow can read, or is absurdly large.
    """
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as opened:
            return ImageOps.exif_transpose(opened).convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InvalidMedia(f"the photo is not an image we can read ({type(exc).__name__})") from None


def find_face(image: Image.Image) -> tuple[int, int, int, int] | None:
    """The largest frontal face as (x, y, width, height) in ``image`` pixels, or None.

    None too without OpenCV (an install without ``conveyor[local]``): D-ID avatars keep a centre crop.
    """
    if missing_modules("avatar", LOCAL):
        return None
    import cv2

    scale = min(1.0, DETECT_SIDE / max(image.size))
    small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    gray = cv2.equalizeHist(cv2.cvtColor(np.asarray(small), cv2.COLOR_RGB2GRAY))
    min_side = max(20, int(min(small.size) * 0.08))
    cascade = _cascade()
    if cascade is None:
        return None
    faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: int(f[2]) * int(f[3]))
    return (round(x / scale), round(y / scale), round(w / scale), round(h / scale))


def crop_avatar(photo: Path, out_path: Path, *, size: int = AVATAR_SIZE) -> tuple[Path, bool]:
    """Write a square face crop of ``photo`` to ``out_path`` (PNG); returns (path, face found)."""
    image = open_photo(photo)
    face = find_face(image)
    if face is not None:
        x, y, w, h = face
        side = min(int(w * FACE_MARGIN), image.width, image.height)
        cx, cy = x + w / 2, y + h * 0.55  # a little below the box centre, to keep the chin
        left = int(min(max(cx - side / 2, 0), image.width - side))
        top = int(min(max(cy - side / 2, 0), image.height - side))
        mouth = MouthSpot((x + w / 2 - left) / side, (y + h * 0.76 - top) / side, (w * 0.3) / side)
    else:
        side = min(image.width, image.height)
        left = (image.width - side) // 2
        top = int((image.height - side) * 0.3)  # portraits keep the face in the upper part
        mouth = MouthSpot()
    crop = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
    info = PngImagePlugin.PngInfo()
    info.add_text(_MOUTH_KEY, json.dumps({"x": mouth.x, "y": mouth.y, "width": mouth.width}))
    crop.save(out_path, "PNG", pnginfo=info)
    return out_path, face is not None


def read_mouth(avatar_png: Path) -> MouthSpot:
    """The mouth position written by :func:`crop_avatar` (a default for other images)."""
    with Image.open(avatar_png) as image:
        raw = image.info.get(_MOUTH_KEY) if hasattr(image, "info") else None
    try:
        data = json.loads(raw) if raw else {}
        return MouthSpot(float(data["x"]), float(data["y"]), float(data["width"]))
    except (ValueError, KeyError, TypeError):
        return MouthSpot()


def parse_avatar_id(avatar_id: str) -> dict[str, Any]:
    """``{"provider", "image", "source_url"?}`` for an avatar id.

    Raises:
      InvalidInput: when the id is not one Conveyor made.
    """
    if is_ref(avatar_id):
        return {"provider": LOCAL, "image": avatar_id}
    try:
        data = json.loads(avatar_id)
    except (TypeError, ValueError):
        data = None
    if not isinstance(data, dict) or data.get("provider") != "did" or not is_ref(data.get("image")):
        raise InvalidInput("the avatar id is not one Conveyor made")
    return data


def store_crop(photo: Path, *, job_id: str) -> tuple[str, bool]:
    """Crop the face of ``photo`` and store it; returns (its storage reference, face found)."""
    with tempfile.TemporaryDirectory(prefix="conveyor-avatar-") as tmp:
        out, found = crop_avatar(photo, Path(tmp) / "avatar.png")
        return store_output(out, job_id=job_id, name="avatar.png", content_type="image/png"), found


class LocalAvatars:
    """Avatars as face crops in our storage."""

    def create(self, photo: Path, *, job_id: str) -> str:
        """Crop the face of ``photo`` and store it; returns the avatar id (a storage reference).

        A photo with no face found still makes an avatar (a centre crop), with a ``no_face_found`` warning.
        """
        avatar, found = store_crop(photo, job_id=job_id)
        if not found:
            current_stage().warn(NO_FACE_FOUND, "No face was found in the photo: the avatar is a crop of its "
                                                "centre, and talking videos guess where the mouth is.")
        return avatar


class DIDAvatars:
    """D-ID avatars: the photo uploaded with ``POST /images`` (multipart ``image``) -> ``url``."""

    def __init__(self, client: httpx.Client | None = None, base_url: str | None = None,
                 api_key: str | None = None) -> None:
        self.client = client or http_client()
        self.base_url = (base_url or settings().base_url("DID_BASE_URL")).rstrip("/")
        self.api_key = api_key or require_secret("did_api_key", "DID_API_KEY")

    def upload_image(self, image: Path) -> str:
        """Upload an image to D-ID; returns the URL D-ID gives it (usable as a talk's ``source_url``)."""
        content_type = "image/png" if image.suffix.lower() == ".png" else "image/jpeg"
        answer = upload_file(
            self.client, f"{self.base_url}/images", image, field="image", content_type=content_type,
            headers={"Authorization": f"Basic {self.api_key}", "Accept": "application/json"},
        )
        return answered(answer.get("url"), "D-ID did not return an image URL")

    def create(self, photo: Path, *, job_id: str) -> str:
        ctx = current_stage()
        # D-ID finds the face itself in the photo: the local crop is kept, without a warning of its own.
        image_ref = ctx.saved("avatar_image") or ctx.checkpoint(
            "avatar_image", store_crop(photo, job_id=job_id)[0]
        )
        # The upload is checkpointed so a redelivery does not upload the photo twice.
        source_url = saved_or_new("did_image_url", "did", lambda: self.upload_image(photo))
        return json.dumps({"provider": "did", "source_url": source_url, "image": image_ref},
                          sort_keys=True, separators=(",", ":"))


def avatar_maker() -> LocalAvatars | DIDAvatars:
    """The configured avatar provider: D-ID when ``DID_API_KEY`` is set, else the local face crop."""
    factory = pick("avatar", {LOCAL: LocalAvatars, "did": DIDAvatars})
    return factory()
