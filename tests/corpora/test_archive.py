"""Safe extraction: hostile members are refused by name and nothing is written; good archives extract."""
from __future__ import annotations

import io
import stat
import tarfile
import zipfile

import pytest

from pipeline.corpora.archive import UnsafeArchiveError, extract


def _tar(path, members):
    with tarfile.open(path, "w") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data=b"payload"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in members:
            zf.writestr(info, data)
    return path


def _zip_link(name, target):
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix, so the mode bits in external_attr are meaningful
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


@pytest.mark.parametrize(
    "member, message",
    [
        (_file("../x"), "'../x' contains '..'"),
        (_file("ok/../../x"), "contains '..'"),
        (_file("/abs"), "'/abs' has an absolute path"),
        (_special("link", tarfile.SYMTYPE, "/etc/passwd"), "'link' is a link"),
        (_special("hard", tarfile.LNKTYPE, "good.txt"), "'hard' is a link"),
        (_special("dev", tarfile.CHRTYPE), "'dev' is a device"),
    ],
)
def test_tar_refuses_unsafe_member_and_writes_nothing(tmp_path, member, message):
    archive = _tar(tmp_path / "bad.tar", [_file("good.txt"), member])
    dest = tmp_path / "out" / "dest"
    with pytest.raises(UnsafeArchiveError, match=f"bad.tar: member .*{message}"):
        extract(archive, dest)
    # Members are checked before anything is created: no destination, no temporary folder, no escapee.
    assert not (tmp_path / "out").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "member, message",
    [
        ((zipfile.ZipInfo("../x"), b"x"), "'../x' contains '..'"),
        ((zipfile.ZipInfo("/abs"), b"x"), "'/abs' has an absolute path"),
        ((zipfile.ZipInfo("C:/windows"), b"x"), "has an absolute path"),
        (_zip_link("link", "/etc/passwd"), "'link' is a symbolic link"),
    ],
)
def test_zip_refuses_unsafe_member(tmp_path, member, message):
    archive = _zip(tmp_path / "bad.zip", [(zipfile.ZipInfo("good.txt"), b"fine"), member])
    with pytest.raises(UnsafeArchiveError, match=message):
        extract(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_good_archives_extract_and_replace_destination(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "stale.txt").write_text("from an older extraction")
    zipped = _zip(tmp_path / "v.zip", [(zipfile.ZipInfo("s1/"), b""), (zipfile.ZipInfo("s1/bbaf2n.mpg"), b"video bytes")])
    extract(zipped, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == ["s1", "s1/bbaf2n.mpg"]
    assert (dest / "s1" / "bbaf2n.mpg").read_bytes() == b"video bytes"

    root_entry = tarfile.TarInfo("./")
    root_entry.type = tarfile.DIRTYPE
    tarred = _tar(tmp_path / "a.tar", [(root_entry, None), _file("./align/bbaf2n.align", b"0 1 sil\n"), _file("align/x.align", b"")])
    extract(tarred, dest)
    assert (dest / "align" / "bbaf2n.align").read_bytes() == b"0 1 sil\n" and not (dest / "s1").exists()


def test_not_an_archive_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(ValueError, match="neither a zip nor a tar"):
        extract(junk, tmp_path / "dest")
