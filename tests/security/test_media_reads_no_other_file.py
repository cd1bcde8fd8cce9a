"""Issue 14, break 1: a fetched "audio" file that is a playlist must not make ffmpeg read other files.

An HLS playlist (``#EXTM3U`` and a line naming a local path) served as a lecture's ``audio`` URL
used to be fetched, probed and decoded, and the job transcribed the local file it named. Fetched
files are now sniffed like uploads (playlists, concat lists and text are refused), and every
ffmpeg input is limited to the ``file``/``pipe`` protocols and the media demuxers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Blueprint, Response

from actors.errors import InvalidMedia
from actors.media.audio import stream_pcm
from actors.media.ffmpeg import MEDIA_DEMUXERS, guarded, probe, run_ffmpeg
from conveyor.config import configure, settings
from tests.emulator import start_emulator
from tests.support.jobs import wait_for_job


@pytest.fixture
def secret_segment(tmp_path: Path) -> Path:
    """A file on the worker's disk that no job may read: two seconds of tone in MPEG-TS."""
    segment = tmp_path / "private.ts"
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "mp2", str(segment)])
    return segment


def playlist(segment: Path) -> bytes:
    return (f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{segment}\n#EXT-X-ENDLIST\n").encode()


def concat_list(segment: Path) -> bytes:
    return f"ffconcat version 1.0\nfile {segment}\n".encode()


def test_a_playlist_on_disk_is_not_read_by_probe_decode_or_convert(tmp_path, secret_segment):
    listing = tmp_path / "lecture.m3u8"
    listing.write_bytes(playlist(secret_segment))
    with pytest.raises(InvalidMedia):
        probe(listing)
    with pytest.raises(InvalidMedia):
        list(stream_pcm(listing))
    with pytest.raises(InvalidMedia):
        run_ffmpeg(["-i", str(listing), str(tmp_path / "out.wav")])
    assert not (tmp_path / "out.wav").exists()


def test_every_input_gets_the_protocol_whitelist_and_a_demuxer():
    args = guarded(["-i", "a.mp3", "-f", "lavfi", "-i", "anullsrc", "-f", "concat", "-safe", "0", "-i", "l.txt",
                    "-f", "wav", "out.wav"])
    assert args == ["-protocol_whitelist", "file,pipe", "-format_whitelist", MEDIA_DEMUXERS, "-i", "a.mp3",
                    "-f", "lavfi", "-protocol_whitelist", "file,pipe", "-i", "anullsrc",
                    "-f", "concat", "-safe", "0", "-protocol_whitelist", "file,pipe", "-i", "l.txt",
                    "-f", "wav", "out.wav"]
    assert "hls" not in MEDIA_DEMUXERS.split(",") and "concat" not in MEDIA_DEMUXERS.split(",")


@pytest.fixture
def playlist_server(secret_segment):
    """A loopback server of a playlist, a concat list and text posing as audio (test-only loopback)."""
    before = settings()
    configure(before, fetch_allow_loopback=True)
    bp = Blueprint("playlists", __name__)
    bp.add_url_rule("/lecture.m3u8", "hls",
                    lambda: Response(playlist(secret_segment), mimetype="audio/mpeg"))
    bp.add_url_rule("/lecture.mp3", "concat",
                    lambda: Response(concat_list(secret_segment), mimetype="audio/mpeg"))
    bp.add_url_rule("/notes.wav", "text", lambda: Response(b"just some text\n" * 10, mimetype="audio/wav"))
    server = start_emulator(bp)
    yield server
    server.stop()
    configure(before)


@pytest.mark.parametrize("path", ["/lecture.m3u8", "/lecture.mp3", "/notes.wav"])
def test_a_fetched_playlist_fails_the_job_with_invalid_media(client, auth, stub_worker, playlist_server, path):
    job = client.post("/api/jobs", headers=auth,
                      json={"pipeline": "lecture_notes", "input": {"audio": playlist_server.url(path)}}).get_json()
    job = wait_for_job(job["id"], timeout=60)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "invalid_media" and job["error"]["stage"] == "prepare", job["error"]
    assert job["stages"][0]["attempts"] == 1
