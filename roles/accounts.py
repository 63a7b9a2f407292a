"""The system accounts our services run as: no shell, a private home, a config dir."""

from __future__ import annotations

from io import StringIO

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, server

from llmfleet.hostpaths import CONFIG_DIR


def service_account(user: str, home: str, label: str) -> None:
    """``user``/``user`` system account without a login shell, ``home`` 0750 owned by it."""
    server.group(name=f"{label} group", group=user, system=True)
    server.user(
        name=f"{label} user (no shell)",
        user=user,
        group=user,
        system=True,
        home=home,
        shell="/usr/sbin/nologin",
        ensure_home=False,
    )
    files.directory(name=f"{label} home", path=home, user=user, group=user, mode="750")
    files.directory(name="Config directory", path=CONFIG_DIR, mode="755")


def secret_file(name: str, text: str, dest: str) -> OperationMeta:
    """A root-only 0600 file: env files with keys, the Hub token while a pull runs."""
    return files.put(
        name=name, src=StringIO(text), dest=dest, user="root", group="root", mode="600"
    )
