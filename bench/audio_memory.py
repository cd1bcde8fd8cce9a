"""Peak memory of preparing and splitting a two-hour lecture, against decoding it whole.

Usage: ``python bench/audio_memory.py [--hours 2]``. Builds a long MP3 by looping the demo lecture
(``samples/lecture.mp3``) with ffmpeg, then runs, each in a fresh child process:

- streaming: the ``prepare_audio`` and ``split_audio`` stages (60 s chunks written to a temporary storage);
- baseline: decoding the whole file at once to 16 kHz mono PCM and building a pydub segment from it.

Each child reports its peak RSS (``resource.getrusage``). The last line is the ratio streaming/baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT_MB = 500  #: MB of peak RSS the streaming work must stay under


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def child(mode: str, audio: Path, storage: Path) -> None:
    os.environ.setdefault("CONVEYOR_BROKER", "stub")
    os.environ["STORAGE_URL"] = f"file://{storage}"
    sys.path.insert(0, str(ROOT))
    started = time.monotonic()
    if mode == "streaming":
        from actors.files.keys import new_key, ref
        from actors.files.storage import get_storage
        from actors.stages.audio import prepare_audio, split_audio

        key = new_key("uploads", audio.name)
        get_storage().put_file(key, audio)
        prepared = prepare_audio({"audio": ref(key)})
        chunks = len(split_audio(prepared))
    else:
        import numpy as np

        from actors.media.audio import AudioSegment
        from actors.media.ffmpeg import run_ffmpeg

        pcm = run_ffmpeg(["-i", str(audio), "-vn", "-f", "s16le", "-ac", "1", "-ar", "16000", "pipe:1"])
        segment = AudioSegment(data=pcm, sample_width=2, frame_rate=16000, channels=1)
        chunks = len(np.frombuffer(segment.raw_data, dtype=np.int16)) // (60 * 16000)
    print(json.dumps({"mode": mode, "peak_rss_mb": peak_rss_mb(), "chunks": chunks,
                      "seconds": time.monotonic() - started}))


def run_child(mode: str, audio: Path, storage: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", mode, str(audio), str(storage)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "AUDIO", "STORAGE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return 0

    import imageio_ffmpeg

    sample = ROOT / "samples" / "lecture.mp3"
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        audio = Path(tmp) / "long-lecture.mp3"
        loops = max(1, round(args.hours * 3600 / 60))  # the sample lasts about 60 s
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                        "-stream_loop", str(loops - 1), "-i", str(sample), "-c", "copy", str(audio)], check=True)
        print(f"input: {audio.stat().st_size / 1e6:.0f} MB MP3, about {loops / 60:.1f} h")
        streaming = run_child("streaming", audio, Path(tmp) / "files-a")
        baseline = run_child("baseline", audio, Path(tmp) / "files-b")
    print(f"streaming prepare+split: peak RSS {streaming['peak_rss_mb']:.0f} MB, {streaming['chunks']} chunks, "
          f"{streaming['seconds']:.1f} s")
    print(f"baseline whole-file decode: peak RSS {baseline['peak_rss_mb']:.0f} MB, {baseline['seconds']:.1f} s")
    verdict = "OK" if streaming["peak_rss_mb"] < LIMIT_MB else f"OVER the {LIMIT_MB} MB limit"
    print(f"streaming under {LIMIT_MB} MB: {verdict}")
    print(f"peak RSS ratio streaming/baseline: {streaming['peak_rss_mb'] / baseline['peak_rss_mb']:.3f}")
    return 0 if streaming["peak_rss_mb"] < LIMIT_MB else 1


if __name__ == "__main__":
    raise SystemExit(main())
