"""Rotoscoping: a matte video (white subject on black) and a PNG mask of one frame of it.

The mask is the matte frame with the largest confident subject area (pixels at least
:data:`CONFIDENT`), so it shows the subject where it is best seen, not wherever the clip starts.
When even that frame is surely the subject over less than :data:`WEAK_SUBJECT_SHARE` of the
picture, the job gets a ``weak_subject_mask`` warning.

The local provider segments with OpenCV's GrabCut. A background plate (the per-pixel median of
frames spread over the clip) marks what changed in each frame; with a static camera and a moving
subject that seeds GrabCut. Without a usable plate (a subject that hardly moves), the first frame
starts from the person whose face OpenCV's Haar cascade finds (face and mid-chest certain, body probable,
the band above and beside the head background), else from a rectangle (the subject inside the
central area, touching the bottom edge at most); each later frame starts from the previous matte. It suits one subject on a distinct
background; it is not a learned matting model. Frames are segmented at :data:`PROCESS_WIDTH` px
and the matte is scaled up with soft edges.

Replicate runs Robust Video Matting (``arielreplicate/robust_video_matting``, ``alpha-mask``
output): the video is uploaded (``POST /v1/files``), a prediction created (``POST /v1/predictions``)
and polled (``GET /v1/predictions/{id}``) without holding a thread.

The optional ``description`` is not used by either provider; it is kept for prompt-based ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from actors.context import current_stage
from actors.errors import InvalidMedia
from actors.media.ffmpeg import run_ffmpeg
from actors.media.video import read_frames, video_meta, write_frames
from actors.providers import LOCAL, pick
from actors.providers.remote import PollSchedule, RemoteProvider, answered, saved_or_new, upload_file

PROCESS_WIDTH = 192  #: px; frames are segmented at this width
PLATE_FRAMES = 40  #: frames sampled for the background plate
PLATE_DISTANCE = 40.0  #: RGB distance from the plate above which a pixel has changed
FIRST_ITERATIONS = 5  #: GrabCut iterations on the first frame
NEXT_ITERATIONS = 2  #: GrabCut iterations on each later frame
MAX_SECONDS = 600.0  #: s of video accepted
REPLICATE_POLL_SECONDS = 3.0
CONFIDENT = 230  #: matte value (0–255) from which a pixel is surely the subject
WEAK_SUBJECT_SHARE = 0.01  #: a mask surely the subject over less of the picture than this gets a warning
WEAK_SUBJECT_MASK = "weak_subject_mask"  #: that warning's code
#: Robust Video Matting on Replicate (arielreplicate/robust_video_matting).
RVM_VERSION = "2d2de06a76a837a4ba92b6164bf8bfd3ddb524a1fb64b0d8ae055af17fa22503"


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def background_plate(video: Path, size: tuple[int, int], frames_expected: int) -> np.ndarray | None:
    """The per-pixel median of up to :data:`PLATE_FRAMES` frames spread over the video (RGB float).

    A static camera's background survives the median while a moving subject does not. None for
    videos too short to tell.
    """
    step = max(1, frames_expected // PLATE_FRAMES)
    samples = [frame for index, frame in enumerate(read_frames(video, size=size)) if index % step == 0]
    if len(samples) < 5:
        return None
    return np.median(np.stack(samples[:PLATE_FRAMES * 2]), axis=0).astype(np.float32)


class GrabCutTracker:
    """Segments frame after frame with GrabCut, seeded by the previous matte and the background plate."""

    def __init__(self, plate: np.ndarray | None) -> None:
        import cv2

        self.cv2 = cv2
        self.plate = plate
        self.previous: np.ndarray | None = None  #: bool foreground of the last frame
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))

    def _changed(self, frame: np.ndarray) -> np.ndarray | None:
        """Pixels that differ from the background plate, when the plate tells anything useful."""
        if self.plate is None:
            return None
        distance = np.sqrt(((frame.astype(np.float32) - self.plate) ** 2).sum(axis=2))
        changed = self.cv2.morphologyEx((distance > PLATE_DISTANCE).astype(np.uint8), self.cv2.MORPH_OPEN,
                                        self.kernel) > 0
        share = float(changed.mean())
        return changed if 0.002 < share < 0.7 else None

    def _seed_from_face(self, frame: np.ndarray, mask: np.ndarray) -> bool:
        """Seed ``mask`` for a person: the face is theirs, the body below it probably too.

        Returns False when no face is found. The band above the head and beside it is background.
        """
        from PIL import Image

        from actors.providers.avatar import find_face

        face = find_face(Image.fromarray(frame))
        if face is None:
            return False
        cv2 = self.cv2
        height, width = mask.shape
        x, y, w, h = face
        mask[:] = cv2.GC_PR_BGD
        body_top = y + h
        mask[body_top:, max(0, x - int(1.2 * w)) : min(width, x + w + int(1.2 * w))] = cv2.GC_PR_FGD
        mask[max(0, y - h // 3) : body_top, max(0, x - w // 8) : min(width, x + w + w // 8)] = cv2.GC_PR_FGD
        mask[y + h // 6 : y + h - h // 6, x + w // 6 : x + w - w // 6] = cv2.GC_FGD
        # The middle of the chest is the person's too: it teaches GrabCut the clothes' colours.
        mask[min(height, body_top + h // 2) :, max(0, x - w // 4) : min(width, x + w + w // 4)] = cv2.GC_FGD
        mask[: max(0, y - h // 2), :] = cv2.GC_BGD
        beside = y + h // 2  # down to the mouth, what lies beside the head is not the person
        mask[:beside, : max(0, x - w // 4)] = cv2.GC_BGD
        mask[:beside, min(width, x + w + w // 4) :] = cv2.GC_BGD
        return bool(((mask == cv2.GC_BGD) | (mask == cv2.GC_PR_BGD)).any())

    def segment(self, frame: np.ndarray) -> np.ndarray:
        """The foreground of ``frame`` (RGB) as a bool array."""
        cv2 = self.cv2
        image = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        height, width = image.shape[:2]
        changed = self._changed(frame)
        seed = changed if changed is not None else self.previous
        mask = np.zeros((height, width), np.uint8)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        if seed is None or not seed.any():
            if self._seed_from_face(frame, mask):
                cv2.grabCut(image, mask, None, bgd, fgd, FIRST_ITERATIONS, cv2.GC_INIT_WITH_MASK)
            else:
                # No hint: the subject is assumed inside the central area, touching the bottom at most.
                rect = (int(width * 0.08), int(height * 0.05), int(width * 0.84), height - int(height * 0.05) - 1)
                cv2.grabCut(image, mask, rect, bgd, fgd, FIRST_ITERATIONS, cv2.GC_INIT_WITH_RECT)
        else:
            hint = seed | self.previous if self.previous is not None and changed is not None else seed
            hint_u8 = hint.astype(np.uint8)
            near = cv2.dilate(hint_u8, self.kernel, iterations=6) > 0
            mask[:] = cv2.GC_BGD
            mask[near] = cv2.GC_PR_BGD
            mask[hint] = cv2.GC_PR_FGD
            mask[cv2.erode(seed.astype(np.uint8), self.kernel, iterations=2) > 0] = cv2.GC_FGD
            if (mask == cv2.GC_BGD).any() and (mask == cv2.GC_FGD).any():
                cv2.grabCut(image, mask, None, bgd, fgd, NEXT_ITERATIONS, cv2.GC_INIT_WITH_MASK)
        foreground = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
        foreground = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, self.kernel)
        foreground = cv2.morphologyEx(foreground, cv2.MORPH_CLOSE, self.kernel)
        self.previous = foreground > 0
        return self.previous


class BestMask:
    """Keeps the matte frame with the largest confident subject area among those offered."""

    def __init__(self) -> None:
        self.index = -1  #: the chosen frame's number in the matte, from 0
        self.share = 0.0  #: the share of that frame surely the subject (0–1)
        self.frame: np.ndarray | None = None

    def offer(self, index: int, gray: np.ndarray) -> None:
        """Consider frame ``index`` of the matte (``gray``: 0–255, one channel)."""
        share = float((gray >= CONFIDENT).mean())
        if self.frame is None or share > self.share:
            self.index, self.share, self.frame = index, share, gray

    def warn_if_weak(self) -> None:
        """Warn the job when even the best frame hardly shows the subject."""
        if self.share < WEAK_SUBJECT_SHARE:
            current_stage().warn(WEAK_SUBJECT_MASK, (
                f"The subject is hardly visible in any frame: the mask, from frame {self.index + 1} where it "
                f"is seen best, is sure of only {self.share:.1%} of the picture."))


def matte_local(video: Path, matte_out: Path, mask_out: Path) -> tuple[Path, Path]:
    """Write the matte video (same size and rate as ``video``, no audio) and the mask PNG of its frame
    with the largest confident subject area.

    Raises:
      InvalidMedia: when the file has no video, no frames, or is too long.
    """
    import cv2
    from PIL import Image

    meta = video_meta(video)
    if meta.duration > MAX_SECONDS:
        raise InvalidMedia(f"the video is longer than {MAX_SECONDS:.0f} s")
    out_size = (_even(meta.width), _even(meta.height))
    scale = min(1.0, PROCESS_WIDTH / meta.width)
    work_size = (_even(meta.width * scale), _even(meta.height * scale))
    expected = max(1, round(meta.duration * meta.fps))
    ctx = current_stage()
    ctx.progress(0.02, "Estimating the background")
    tracker = GrabCutTracker(background_plate(video, work_size, expected))
    best = BestMask()

    def mattes() -> Any:
        for index, frame in enumerate(read_frames(video, size=work_size)):
            hard = tracker.segment(frame).astype(np.float32)
            soft = cv2.resize(hard, out_size, interpolation=cv2.INTER_LINEAR)
            soft = cv2.GaussianBlur(soft, (0, 0), max(1.0, out_size[0] / 300))
            gray = (np.clip(soft, 0.0, 1.0) * 255).astype(np.uint8)
            best.offer(index, gray)
            if index % 12 == 0:
                ctx.progress(0.05 + 0.9 * min(1.0, index / expected),
                             f"Cutting out frame {index + 1} of about {expected}")
            yield np.repeat(gray[:, :, None], 3, axis=2)

    write_frames(mattes(), matte_out, size=out_size, fps=round(meta.fps) or 25, block=2)
    if best.frame is None:
        raise InvalidMedia("the video has no frames")
    Image.fromarray(best.frame, "L").save(mask_out, "PNG")
    best.warn_if_weak()
    return matte_out, mask_out


def best_frame_mask(matte: Path, mask_out: Path) -> Path:
    """The frame of a matte video with the largest confident subject area, as a grayscale PNG.

    Frames are compared at :data:`PROCESS_WIDTH` px; the chosen one is written at full size.
    """
    meta = video_meta(matte)
    scale = min(1.0, PROCESS_WIDTH / meta.width)
    best = BestMask()
    for index, frame in enumerate(read_frames(matte, size=(_even(meta.width * scale), _even(meta.height * scale)))):
        best.offer(index, frame[:, :, 0])
    if best.frame is None:
        raise InvalidMedia("the matte has no frames")
    run_ffmpeg(["-i", str(matte), "-vf", f"select=eq(n\\,{best.index}),format=gray", "-frames:v", "1",
                str(mask_out)])
    best.warn_if_weak()
    return mask_out


class LocalRoto:
    """GrabCut with the previous matte as the seed, on this machine."""

    def matte(self, video: Path, matte_out: Path, mask_out: Path, description: str | None = None
              ) -> tuple[Path, Path]:
        return matte_local(video, matte_out, mask_out)


class ReplicateRoto(RemoteProvider):
    """Robust Video Matting on Replicate: upload, predict, poll, copy the matte into our storage."""

    name, label, job_noun = "replicate", "Replicate", "prediction"
    base_url_variable = "REPLICATE_BASE_URL"
    secret = ("replicate_api_token", "REPLICATE_API_TOKEN")
    create_path, poll_path = "/v1/predictions", "/v1/predictions/{id}"
    done_states, failed_states = frozenset({"succeeded"}), frozenset({"failed", "canceled"})
    schedule = PollSchedule(REPLICATE_POLL_SECONDS)

    def result_url(self, answer: dict[str, Any]) -> Any:
        output = answer.get("output")
        return output[-1] if isinstance(output, list) and output else output

    def _upload(self, video: Path) -> str:
        answer = upload_file(self.client, f"{self.base_url}/v1/files", video, headers=self.headers,
                             field="content", content_type="video/mp4")
        return answered((answer.get("urls") or {}).get("get"), "Replicate did not return a file URL")

    def matte(self, video: Path, matte_out: Path, mask_out: Path, description: str | None = None
              ) -> tuple[Path, Path]:
        video_url = saved_or_new("replicate_file", self.name, lambda: self._upload(video))
        output = self.run({"version": RVM_VERSION, "input": {"input_video": video_url, "output_type": "alpha-mask"}},
                          what="the matte")
        self.fetch_result(output, matte_out, no_video="Replicate's matte has no video")
        return matte_out, best_frame_mask(matte_out, mask_out)


def roto_provider() -> LocalRoto | ReplicateRoto:
    """The configured provider: Replicate when ``REPLICATE_API_TOKEN`` is set, else GrabCut locally."""
    factory = pick("roto", {LOCAL: LocalRoto, "replicate": ReplicateRoto})
    return factory()
