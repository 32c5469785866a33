"""The console's folder of profiles (`editor.profiles_dir`): list, read, and save atomically.

Names are plain file names (FILE_NAME, no folder, no leading dot), opened relative to the folder's own
descriptor with O_NOFOLLOW, so neither `..` nor a symbolic link planted in the folder reaches anything
outside it. A save names the SHA-256 of the text it was edited from: if the file changed meanwhile (another
browser, an editor on the host), the save is refused with 409 rather than losing that change. Writes go to
a temporary file in the same folder, fsync, rename, fsync of the folder; an existing file keeps its mode.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import threading
from pathlib import Path
from typing import Any

from pilot.console.editor import MAX_TEXT, EditorError
from pilot.console.editor.text import FILE_NAME, encoded

MAX_FILES = 1000
NEW_MODE = 0o600  # a profile may hold a broker password inline: private until its owner says otherwise
HEX = frozenset("0123456789abcdef")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ProfilesDir:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._lock = threading.Lock()  # one save at a time: the conflict check and the rename are one step

    def _dir(self) -> int:
        if self.folder is None:
            raise EditorError(404, "this console has no profiles folder (editor.profiles_dir)")
        try:
            return os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise EditorError(503, f"cannot open the profiles folder: {exc.strerror or exc}") from None

    @staticmethod
    def _name(name: Any) -> str:
        if not isinstance(name, str) or not FILE_NAME.fullmatch(name):
            raise EditorError(400, "a profile name is letters, digits, '.', '_' and '-', ending in .yaml or .yml")
        return name

    def listing(self) -> dict[str, Any]:
        if self.folder is None:
            return {"dir": None, "files": []}
        fd = self._dir()
        files = []
        try:
            for name in sorted(os.listdir(fd)):
                if len(files) >= MAX_FILES or not FILE_NAME.fullmatch(name):
                    continue
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue  # links, folders, devices: not offered
                digest = None
                if st.st_size <= MAX_TEXT:
                    try:
                        digest = sha256(self._read(fd, name)[0])
                    except EditorError:
                        continue
                files.append({"name": name, "size": st.st_size, "mtime": st.st_mtime, "sha256": digest})
        finally:
            os.close(fd)
        return {"dir": str(self.folder), "files": files}

    @staticmethod
    def _read(fd: int, name: str) -> tuple[bytes, os.stat_result]:
        try:
            handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        except FileNotFoundError:
            raise EditorError(404, "no such profile") from None
        except OSError as exc:
            if exc.errno == 40:  # ELOOP: a symbolic link
                raise EditorError(403, "the editor does not follow symbolic links") from None
            raise EditorError(403, f"cannot read the profile: {exc.strerror or exc}") from None
        try:
            st = os.fstat(handle)
            if not stat.S_ISREG(st.st_mode):
                raise EditorError(403, "not a regular file")
            if st.st_size > MAX_TEXT:
                raise EditorError(413, f"the profile is larger than {MAX_TEXT // 1024} KiB")
            chunks, size = [], 0
            while size <= MAX_TEXT:
                chunk = os.read(handle, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            data = b"".join(chunks)
            if len(data) > MAX_TEXT:
                raise EditorError(413, f"the profile is larger than {MAX_TEXT // 1024} KiB")
            return data, st
        finally:
            os.close(handle)

    def read(self, name: Any) -> dict[str, Any]:
        name = self._name(name)
        fd = self._dir()
        try:
            data, _st = self._read(fd, name)
        finally:
            os.close(fd)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise EditorError(422, "the profile is not UTF-8 text") from None
        return {"text": text, "sha256": sha256(data)}

    def save(self, name: Any, text: Any, base_sha256: Any) -> dict[str, Any]:
        name = self._name(name)
        data = encoded(text)
        if base_sha256 is not None and not (
            isinstance(base_sha256, str) and len(base_sha256) == 64 and set(base_sha256) <= HEX
        ):
            raise EditorError(
                400, "base_sha256 is the 64 lower-case hex digits of the text it was edited from, or null"
            )
        with self._lock:
            fd = self._dir()
            try:
                mode = NEW_MODE
                try:
                    current, st = self._read(fd, name)
                    now = sha256(current)
                    mode = stat.S_IMODE(st.st_mode)
                except EditorError as exc:
                    if exc.status != 404:
                        raise
                    now = None
                if now != base_sha256:
                    if now is None:
                        raise EditorError(409, "the file was removed since it was opened; save it again as new")
                    raise EditorError(409, "the file changed since it was opened; reload it and apply your change")
                tmp = f".{name}.{secrets.token_hex(4)}.tmp"
                handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
                try:
                    try:
                        view = memoryview(data)
                        while view:
                            view = view[os.write(handle, view) :]
                        os.fchmod(handle, mode)
                        os.fsync(handle)
                    finally:
                        os.close(handle)
                    os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
                except BaseException:
                    try:
                        os.unlink(tmp, dir_fd=fd)
                    except OSError:
                        pass
                    raise
                os.fsync(fd)
            except OSError as exc:
                raise EditorError(503, f"cannot save the profile: {exc.strerror or exc}") from None
            finally:
                os.close(fd)
        return {"sha256": sha256(data)}
