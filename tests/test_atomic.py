"""atomic_path: the file it leaves behind is whole and looks like any other new file."""

import os
import stat
import subprocess
import sys

from vidtool.atomic import atomic_path


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_atomic_path_gives_a_new_files_mode_not_mkstemps_0600(tmp_path):
    dest = tmp_path / "out.bin"
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"data")
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666 & ~current_umask()


def test_atomic_path_follows_the_umask_the_process_started_with(tmp_path):
    dest = tmp_path / "out.bin"
    write = (
        "import sys; from vidtool.atomic import atomic_write_bytes; "
        "atomic_write_bytes(sys.argv[1], b'data')"
    )
    subprocess.run(
        [sys.executable, "-c", write, str(dest)], check=True, preexec_fn=lambda: os.umask(0o027)
    )
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640  # 0o666 & ~0o027
