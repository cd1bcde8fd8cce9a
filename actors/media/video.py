"""Frame and clip rendering helpers: title cards, slow-zoom clips, joining clips, audio loudness.

Every clip Conveyor makes itself follows one format (:data:`CLIP_FORMAT`: H.264 yuv420p at a
fixed size and frame rate, AAC mono at 44.1 kHz), so clips can be joined with ``-c copy``;
clips from elsewhere go through :func:`normalize_clip` first. Sizes are multiples of 16 so the
encoder never resizes frames behind our back.
"""

from __future__ import annotations

import hashlib
import math
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from actors.errors import InvalidMedia
from actors.media.ffmpeg import input_args, probe, run_ffmpeg

_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")


@dataclass(frozen=True)
class ClipFormat:
    """The one format of every clip Conveyor renders or normalizes."""

    width: int = 640  #: px, a multiple of 16
    height: int = 368  #: px, a multiple of 16
    fps: int = 24
    audio_rate: int = 44100  #: Hz
    crf: int = 23  #: x264 quality (lower is better and bigger)

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)


CLIP_FORMAT = ClipFormat()


def _encode_args(fmt: ClipFormat) -> list[str]:
    return [
        "-c:v", "libx264", "-preset", "veryfast", "-crf", str(fmt.crf), "-pix_fmt", "yuv420p",
        "-r", str(fmt.fps), "-c:a", "aac", "-b:a", "96k", "-ar", str(fmt.audio_rate), "-ac", "1",
        "-movflags", "+faststart",
    ]  # fmt: skip


def font(size: int, *, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans when the system has it, else Pillow's bundled default font at ``size`` px."""
    path = _FONT_DIR / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
    if path.is_file():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def _palette(seed: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Two colours derived from ``seed``, so each scene gets its own but repeatable background."""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    hue = digest[0] / 255.0
    top = _hsv(hue, 0.55, 0.55)
    bottom = _hsv((hue + 0.12) % 1.0, 0.65, 0.18)
    return top, bottom


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return int(r * 255), int(g * 255), int(b * 255)


def render_title_card(
    text: str, *, heading: str = "", size: tuple[int, int] = CLIP_FORMAT.size
) -> Image.Image:
    """A card with a vertical gradient, an optional heading and ``text`` wrapped to fit.

    Long text is cut with an ellipsis so the card stays readable.
    """
    width, height = size
    top, bottom = _palette(text)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    rows = (1 - ramp) * np.array(top, np.float32) + ramp * np.array(bottom, np.float32)
    image = Image.fromarray(np.repeat(rows, width, axis=1).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    margin = width // 12
    y = height // 8
    if heading:
        head_font = font(max(12, height // 14), bold=True)
        draw.text((margin, y), heading, font=head_font, fill=(255, 255, 255))
        y += int(height / 14 * 1.8)
    body_font = font(max(10, height // 20))
    chars_per_line = max(12, int((width - 2 * margin) / (height / 20 * 0.55)))
    max_lines = max(1, int((height - y - height // 10) / (height / 20 * 1.35)))
    lines = textwrap.wrap(" ".join(text.split()), chars_per_line) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: chars_per_line - 1].rstrip() + "…"
    for line in lines:
        draw.text((margin, y), line, font=body_font, fill=(240, 240, 240))
        y += int(height / 20 * 1.35)
    return image


def zoom_clip(
    image_path: Path,
    out_path: Path,
    *,
    duration: float,
    audio_path: Path | None = None,
    fmt: ClipFormat = CLIP_FORMAT,
) -> Path:
    """Encode a still image as a slow zoom-in clip of ``duration`` seconds, with audio or silence.

    The image is rendered at twice the output size so ``zoompan`` has pixels to zoom into
    without the jitter it shows on small inputs.
    """
    frames = max(1, round(duration * fmt.fps))
    zoom = (
        f"[0:v]scale={fmt.width * 2}:{fmt.height * 2},"
        f"zoompan=z='min(zoom+{0.15 / frames:.6f},1.15)':d={frames}"
        f":x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':s={fmt.width}x{fmt.height}:fps={fmt.fps},"
        "format=yuv420p[v]"
    )
    if audio_path is not None:
        audio_in = ["-i", str(audio_path)]
        audio_filter = f"[1:a]aresample={fmt.audio_rate},apad[a]"
    else:
        audio_in = ["-f", "lavfi", "-i", f"anullsrc=r={fmt.audio_rate}:cl=mono"]
        audio_filter = "[1:a]anull[a]"
    run_ffmpeg(
        ["-f", "image2", "-loop", "1", "-framerate", str(fmt.fps), "-i", str(image_path), *audio_in,
         "-filter_complex", f"{zoom};{audio_filter}", "-map", "[v]", "-map", "[a]",
         "-t", f"{duration:.3f}", *_encode_args(fmt), str(out_path)]
    )  # fmt: skip
    return out_path


def normalize_clip(
    in_path: Path, out_path: Path, *, fmt: ClipFormat = CLIP_FORMAT, narration: Path | None = None
) -> Path:
    """Re-encode any video into :data:`CLIP_FORMAT` (letterboxed to size, silent audio added if none).

    With ``narration``, that audio replaces the clip's own; when it runs longer than the clip,
    the last frame is held until it ends.

    Raises:
      InvalidMedia: when the input has no video stream or ffmpeg cannot read it.
    """
    info = probe(in_path)
    if not info.has_video:
        raise InvalidMedia("the clip has no video stream")
    length = info.duration or 0.0
    hold = ""
    if narration is not None:
        spoken = (probe(narration).duration or 0.0) + 0.5
        if spoken > length:
            hold = f",tpad=stop_mode=clone:stop_duration={spoken - length:.3f}"
            length = spoken
    video = (
        f"[0:v]scale={fmt.width}:{fmt.height}:force_original_aspect_ratio=decrease,"
        f"pad={fmt.width}:{fmt.height}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={fmt.fps}{hold},format=yuv420p[v]"
    )
    if narration is not None:
        inputs = ["-i", str(in_path), "-i", str(narration)]
        audio = f"[1:a]aresample={fmt.audio_rate},aformat=channel_layouts=mono,apad[a]"
    elif info.has_audio:
        inputs = ["-i", str(in_path)]
        audio = f"[0:a]aresample={fmt.audio_rate},aformat=channel_layouts=mono[a]"
    else:
        inputs = ["-i", str(in_path), "-f", "lavfi", "-i", f"anullsrc=r={fmt.audio_rate}:cl=mono"]
        audio = "[1:a]anull[a]"
    duration = ["-t", f"{length:.3f}"] if length else ["-shortest"]
    run_ffmpeg(
        [*inputs, "-filter_complex", f"{video};{audio}", "-map", "[v]", "-map", "[a]", *duration,
         *_encode_args(fmt), str(out_path)]
    )  # fmt: skip
    return out_path


def concat_clips(paths: list[Path], out_path: Path) -> Path:
    """Join clips of one format (see :func:`normalize_clip`) end to end without re-encoding.

    Raises:
      InvalidMedia: when there is nothing to join or ffmpeg refuses the clips.
    """
    if not paths:
        raise InvalidMedia("there are no clips to join")
    listing = out_path.with_suffix(".txt")
    # The concat demuxer reads a list file; quote paths for its own syntax.
    listing.write_text("".join("file '" + str(p.resolve()).replace("'", "'\\''") + "'\n" for p in paths))
    try:
        run_ffmpeg(["-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy",
                    "-movflags", "+faststart", str(out_path)])  # fmt: skip
    finally:
        listing.unlink(missing_ok=True)
    return out_path


def extract_audio(
    video_path: Path, out_path: Path, *, rate: int = 22050, max_seconds: float | None = None
) -> Path:
    """Write the audio track of a video (or any media) as 16-bit mono WAV at ``rate`` Hz.

    ``max_seconds`` keeps only the beginning.

    Raises:
      InvalidMedia: when the media has no audio track or cannot be read.
    """
    if not probe(video_path).has_audio:
        raise InvalidMedia("the video has no audio track to take a voice from")
    limit = ["-t", f"{max_seconds:.3f}"] if max_seconds else []
    run_ffmpeg(["-i", str(video_path), *limit, "-vn", "-ac", "1", "-ar", str(rate), "-c:a", "pcm_s16le",
                str(out_path)])
    return out_path


def read_samples(path: Path, *, rate: int = 16000) -> np.ndarray:
    """Decode any audio (or a video's audio) to mono float32 samples in [-1, 1] at ``rate`` Hz."""
    raw = run_ffmpeg(["-i", str(path), "-vn", "-ac", "1", "-ar", str(rate), "-f", "s16le", "pipe:1"])
    if not raw:
        raise InvalidMedia("the audio is empty")
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def frame_loudness(samples: np.ndarray, rate: int, fps: int) -> np.ndarray:
    """Loudness per video frame in [0, 1]: each frame's RMS over the 95th percentile of all frames.

    Quiet frames (below a tenth of that level) count as silence, so a closed mouth stays closed.
    """
    per_frame = rate / fps
    count = max(1, math.ceil(len(samples) / per_frame))
    rms = np.zeros(count, dtype=np.float32)
    for i in range(count):
        chunk = samples[int(i * per_frame) : int((i + 1) * per_frame)]
        if chunk.size:
            rms[i] = float(np.sqrt(np.mean(chunk.astype(np.float64) ** 2)))
    reference = float(np.percentile(rms, 95)) if rms.size else 0.0
    if reference <= 1e-6:
        return np.zeros_like(rms)
    level = np.clip(rms / reference, 0.0, 1.0)
    level[level < 0.1] = 0.0
    # Smooth over ~3 frames so the mouth does not flicker.
    return np.convolve(np.pad(level, 1, mode="edge"), np.array([0.25, 0.5, 0.25], np.float32), mode="valid")


def write_frames(
    frames: Iterable[np.ndarray],
    out_path: Path,
    *,
    size: tuple[int, int],
    fps: int,
    audio_path: Path | None = None,
    duration: float | None = None,
    block: int = 16,
) -> Path:
    """Encode RGB frames (H x W x 3 uint8) as H.264, muxing ``audio_path`` as AAC when given.

    ``size`` must be a multiple of ``block`` (16 by default, the encoder's macro blocks, so the
    clip can be joined to others; at least 2 for yuv420p); imageio would resize frames otherwise.
    """
    import imageio_ffmpeg

    width, height = size
    if width % block or height % block or block % 2:
        raise ValueError(f"frame size {width}x{height} is not a multiple of {block}")
    output_params = ["-preset", "veryfast", "-crf", "23", "-movflags", "+faststart"]
    if audio_path is not None:
        output_params += ["-ac", "1", "-ar", str(CLIP_FORMAT.audio_rate), "-b:a", "96k"]
        if duration is not None:
            output_params += ["-t", f"{duration:.3f}"]
    writer = imageio_ffmpeg.write_frames(
        str(out_path), size, fps=fps, codec="libx264", macro_block_size=block, quality=None,
        output_params=output_params, audio_path=str(audio_path) if audio_path else None,
        audio_codec="aac" if audio_path else None, ffmpeg_log_level="error",
    )  # fmt: skip
    writer.send(None)  # start the encoder
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()
    return out_path


@dataclass(frozen=True)
class VideoMeta:
    """What the decoder says of a video before its first frame."""

    width: int
    height: int
    fps: float
    duration: float  #: s


def video_meta(path: Path) -> VideoMeta:
    """The size, frame rate and duration of a video.

    Raises:
      InvalidMedia: when the file has no video stream.
    """
    import imageio_ffmpeg

    if not probe(path).has_video:
        raise InvalidMedia("the file has no video stream")
    reader = imageio_ffmpeg.read_frames(str(path), input_params=input_args(path)[:-2])
    try:
        meta = next(reader)
    finally:
        reader.close()
    width, height = meta["size"]
    fps, duration = float(meta.get("fps") or 25.0), float(meta.get("duration") or 0.0)
    return VideoMeta(int(width), int(height), fps, duration)


def read_frames(path: Path, *, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Decode a video's frames as RGB arrays (H x W x 3 uint8), optionally scaled to ``size``."""
    import imageio_ffmpeg

    output_params = ["-vf", f"scale={size[0]}:{size[1]}"] if size else None
    reader = imageio_ffmpeg.read_frames(str(path), input_params=input_args(path)[:-2],
                                        output_params=output_params)
    try:
        meta = next(reader)
        width, height = size or meta["size"]
        for raw in reader:
            yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
    finally:
        reader.close()
