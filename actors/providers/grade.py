"""Colour grading with named presets, done with ffmpeg filters on this machine.

Each preset is a chain of ffmpeg's ``eq``, ``colorbalance``, ``curves``, ``hue`` and ``vignette``
filters. The audio track is copied untouched. There is no cloud provider: grading is cheap and
exact locally.
"""

from __future__ import annotations

from pathlib import Path

from actors.errors import InvalidInput, InvalidMedia
from actors.media.ffmpeg import probe, run_ffmpeg

#: Preset name -> ffmpeg filter chain.
PRESETS: dict[str, str] = {
    # Warmer highlights and midtones, slightly cooler shadows kept neutral.
    "warm": "colorbalance=rs=0.06:bs=-0.06:rm=0.10:gm=0.02:bm=-0.10:rh=0.05:bh=-0.05,eq=saturation=1.1",
    # Blue-leaning midtones and highlights, a touch less saturation.
    "cool": "colorbalance=rs=-0.06:bs=0.08:rm=-0.08:bm=0.10:rh=-0.04:bh=0.06,eq=saturation=0.95",
    # Black and white with hard contrast and a vignette.
    "noir": "hue=s=0,eq=contrast=1.15,curves=preset=increase_contrast,vignette=PI/6",
    # Punchy colour and contrast.
    "vivid": "eq=saturation=1.5:contrast=1.08,curves=preset=increase_contrast",
    # Faded, warm film look.
    "vintage": "curves=preset=vintage,eq=saturation=0.85",
    # Teal shadows, orange highlights.
    "teal_orange": "colorbalance=rs=-0.10:gs=0.02:bs=0.10:rh=0.10:gh=0.02:bh=-0.10,eq=saturation=1.15",
}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def check_preset(preset: str) -> str:
    """The preset's name, normalized.

    Raises:
      InvalidInput: naming the known presets.
    """
    name = preset.strip().lower().replace("-", "_")
    if name not in PRESETS:
        raise InvalidInput(f"unknown preset {preset!r}; use one of: {', '.join(preset_names())}")
    return name


def grade(in_path: Path, out_path: Path, preset: str) -> Path:
    """Write ``in_path`` graded with ``preset`` to ``out_path`` (H.264 MP4, audio copied as AAC).

    Raises:
      InvalidInput: for an unknown preset.
      InvalidMedia: when the file has no video stream or ffmpeg cannot read it.
    """
    chain = PRESETS[check_preset(preset)]
    info = probe(in_path)
    if not info.has_video:
        raise InvalidMedia("the file has no video stream to grade")
    # yuv420p needs even sides; odd-sized inputs lose one pixel row or column.
    video_filter = f"{chain},scale=trunc(iw/2)*2:trunc(ih/2)*2,format=yuv420p"
    audio = ["-c:a", "aac", "-b:a", "160k"] if info.has_audio else ["-an"]
    run_ffmpeg(["-i", str(in_path), "-map", "0:v:0", *(["-map", "0:a:0"] if info.has_audio else []),
                "-vf", video_filter, "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", *audio,
                "-movflags", "+faststart", str(out_path)])  # fmt: skip
    return out_path
