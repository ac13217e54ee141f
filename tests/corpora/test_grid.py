"""GRID: alignments, transcripts from file names, local copies used in place, server downloads."""
from __future__ import annotations

import functools
import json
import re
import tarfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import paths
import pytest

from pipeline.corpora import grid
from pipeline.corpora.alignments import AlignmentError, Word, parse_align, read_align, transcript, transcript_from_name
from pipeline.corpora.config import GridConfig

GRID_SAMPLES = paths.GRID
ALIGN = "0 23750 sil\n23750 29500 bin\n29500 34000 blue\n34000 35500 sp\n35500 41000 at\n41000 47250 f\n47250 53000 two\n53000 61000 now\n61000 74500 sil\n"


def _samples() -> Path:
    if not GRID_SAMPLES.is_dir():
        paths.missing_grid()
    return GRID_SAMPLES


def _source_md_transcripts() -> dict[str, str]:
    text = (_samples() / "SOURCE.md").read_text()
    return dict(re.findall(r"^\| (\w{6})\.mpg \| ([a-z ]+?) \|$", text, flags=re.M))


def test_align_times_are_in_1_25000_s_and_silences_are_not_words():
    words = parse_align(ALIGN)
    assert transcript(words) == "bin blue at f two now"
    assert words[0] == Word("bin", 0.95, 1.18)
    assert words[-1] == Word("now", 2.12, 2.44)


@pytest.mark.parametrize(
    "text, message",
    [
        ("0 100 sil\n100 oops bin\n", r"clip.align:2: times must be integers"),
        ("0 100 sil\n100 200\n", r"clip.align:2: expected 'start end word'"),
        ("0 100 bin\n50 200 blue\n", r"clip.align:2: span 50-200 .*overlaps"),
        ("0 74500 sil\n", "no words"),
    ],
)
def test_malformed_alignment_names_file_and_line(tmp_path, text, message):
    path = tmp_path / "clip.align"
    path.write_text(text)
    with pytest.raises(AlignmentError, match=message):
        read_align(path)


def test_transcripts_from_file_names_match_source_md():
    expected = _source_md_transcripts()
    assert len(expected) == 5
    for stem, sentence in expected.items():
        assert transcript_from_name(_samples() / f"{stem}.mpg") == sentence
    with pytest.raises(ValueError, match="not a GRID sentence code"):
        transcript_from_name("/x/interview.mpg")


def local(source: Path, speakers: tuple[str, ...] | str = "all") -> GridConfig:
    """A local-folder config (the URLs are unused)."""
    return GridConfig(source=str(source), speakers=speakers, sheffield_url="http://unused", zenodo_url="http://unused")


def test_flat_local_folder_is_used_in_place_with_speaker_unknown(tmp_path):
    frame = grid.download(tmp_path / "raw", local(_samples(), ("s1", "s2")), tmp_path / "downloads", tmp_path / "lock.json")
    assert frame.columns.tolist() == grid.COLUMNS
    assert frame["utt_id"].tolist() == [f"unknown_{s}" for s in sorted(_source_md_transcripts())]
    assert set(frame["speaker"]) == {"unknown"} and frame["align_path"].isna().all()
    assert all(Path(p).is_absolute() and Path(p).parent == _samples() for p in frame["video_path"])


def test_speaker_folders_find_alignments_beside_videos_or_in_align(tmp_path):
    clips = sorted(_samples().glob("*.mpg"))
    (tmp_path / "s1" / "align").mkdir(parents=True)
    (tmp_path / "s2" / "video" / "mpg_6000").mkdir(parents=True)
    (tmp_path / "s3").mkdir()
    (tmp_path / "s1" / clips[0].name).symlink_to(clips[0])
    (tmp_path / "s1" / clips[1].name).symlink_to(clips[1])
    (tmp_path / "s1" / "align" / f"{clips[0].stem}.align").write_text(ALIGN)
    nested = tmp_path / "s2" / "video" / "mpg_6000" / clips[2].name
    nested.symlink_to(clips[2])
    nested.with_suffix(".align").write_text(ALIGN)
    (tmp_path / "s3" / clips[3].name).symlink_to(clips[3])  # s3 is not asked for

    frame = grid.download(tmp_path / "raw", local(tmp_path, ("s1", "s2")), tmp_path / "downloads", tmp_path / "lock.json")
    rows = {r.utt_id: r for r in frame.itertuples()}
    assert list(rows) == [f"s1_{clips[0].stem}", f"s1_{clips[1].stem}", f"s2_{clips[2].stem}"]
    assert rows[f"s1_{clips[0].stem}"].align_path == str(tmp_path / "s1" / "align" / f"{clips[0].stem}.align")
    assert pd.isna(rows[f"s1_{clips[1].stem}"].align_path)
    assert rows[f"s2_{clips[2].stem}"].align_path == str(nested.with_suffix(".align"))
    assert not (tmp_path / "raw").exists()  # nothing copied


def test_speaker_list_is_checked():
    assert grid.resolve_speakers("all") == list(grid.SPEAKERS) and len(grid.SPEAKERS) == 33
    assert grid.resolve_speakers(["s29", "s4", "s1", "s2"]) == ["s1", "s2", "s4", "s29"]
    with pytest.raises(ValueError, match="s21 has no video"):
        grid.resolve_speakers(["s1", "s21"])
    with pytest.raises(ValueError, match="'s35' is not a GRID speaker"):
        grid.resolve_speakers(["s35"])


def test_missing_local_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither `sheffield`, `zenodo` nor an existing directory"):
        grid.download(tmp_path, local(tmp_path / "nowhere"), tmp_path / "downloads", tmp_path / "lock.json")


@pytest.fixture
def file_server(tmp_path):
    """A plain HTTP server over `tmp_path/www`, standing in for the GRID servers."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _publish_speaker(root: Path, video_archive: Path, speaker: str, clips: list[Path], inner: str) -> None:
    video_archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(video_archive, "w") as zf:
        for clip in clips:
            zf.write(clip, f"{inner}/{clip.name}")
    align_tar = root / "sheffield" / speaker / "align" / f"{speaker}.tar"
    align_tar.parent.mkdir(parents=True, exist_ok=True)
    align_file = root / f"{clips[0].stem}.align"
    align_file.write_text(ALIGN)
    with tarfile.open(align_tar, "w") as tf:
        tf.add(align_file, f"align/{clips[0].stem}.align")


@pytest.mark.parametrize("source", ["sheffield", "zenodo"])
def test_download_fetches_extracts_and_pins_archives(file_server, tmp_path, source):
    root, url = file_server
    clips = sorted(_samples().glob("*.mpg"))[:2]
    archive = (
        root / "sheffield" / "s1" / "video" / "s1.mpg_vcd.zip" if source == "sheffield" else root / "zenodo" / "s1.zip"
    )
    _publish_speaker(root, archive, "s1", clips, inner="s1")
    cfg = GridConfig(source=source, speakers=("s1",), sheffield_url=f"{url}/sheffield", zenodo_url=f"{url}/zenodo")
    lock_file = tmp_path / "downloads.lock.json"
    raw, downloads = tmp_path / "data" / "raw", tmp_path / "data" / "downloads"

    frame = grid.download(raw, cfg, downloads=downloads, lock_file=lock_file)

    assert frame["utt_id"].tolist() == [f"s1_{c.stem}" for c in clips]
    extracted = [Path(p) for p in frame["video_path"]]
    assert all(p.is_relative_to(raw / "grid" / "s1") and p.read_bytes() == c.read_bytes() for p, c in zip(extracted, clips))
    assert read_align(frame["align_path"][0])[0].word == "bin" and pd.isna(frame["align_path"][1])
    pinned = json.loads(lock_file.read_text())
    # Alignments always come from Sheffield, whichever server holds the videos.
    assert sorted(pinned) == sorted([f"{url}/sheffield/s1/align/s1.tar", grid.video_url("s1", source, f"{url}/{source}")])


def test_failed_speaker_is_reported_after_the_others_are_fetched(file_server, tmp_path):
    root, url = file_server
    clips = sorted(_samples().glob("*.mpg"))[:1]
    _publish_speaker(root, root / "sheffield" / "s2" / "video" / "s2.mpg_vcd.zip", "s2", clips, inner="s2")
    cfg = GridConfig(source="sheffield", speakers=("s1", "s2"), sheffield_url=f"{url}/sheffield", zenodo_url=f"{url}/zenodo")
    downloads = tmp_path / "downloads"
    with pytest.raises(RuntimeError, match=r"failed for 1 of 2 speaker\(s\)(.|\n)*s1: cannot download .*s1\.mpg_vcd\.zip: HTTP 404"):
        grid.download(tmp_path / "raw", cfg, downloads=downloads, lock_file=tmp_path / "lock.json")
    assert (downloads / "grid" / "sheffield" / "s2.mpg_vcd.zip").exists()
