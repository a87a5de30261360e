"""The credentials file: mode 0600 or refused, TOML entries by name, secrets that never print."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from dim.cli import main
from dim.errors import CredentialsError
from dim.power import credentials
from dim.power.credentials import Secret
from tests.conftest import require_root

GOOD = b"""
[default]
username = "admin"
password = "hunter2-secret"

[lab]
username = "root"
password = "calvin-secret"
verify = false
auth = "basic"

[pdu]
community = "private-secret"
"""


def write(tmp_path, data: bytes, mode: int):
    path = tmp_path / "credentials"
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_entries_are_read_by_name_and_default_is_the_fallback(tmp_path):
    store = credentials.load(write(tmp_path, GOOD, 0o600))
    assert store.get("lab").username == "root"
    assert store.get("lab").verify is False and store.get("lab").auth == "basic"
    assert store.get(None).username == "admin"  # a <bmc> without credentials=
    assert store.get("pdu").community.reveal() == "private-secret"
    assert store.get("missing") is None


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_a_file_others_may_read_is_refused_before_it_is_parsed(tmp_path, mode):
    path = write(tmp_path, b"not even toml [[[", mode)
    with pytest.raises(CredentialsError) as caught:
        credentials.load(path)
    assert "readable by others" in caught.value.message
    assert caught.value.hint == f"chmod 600 {path}"
    assert caught.value.exit_status == 2


def test_a_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(CredentialsError) as caught:
        credentials.load(tmp_path / "nope")
    assert "no credentials file" in caught.value.message
    assert "DIM_CREDENTIALS" in caught.value.hint


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b'[a]\npassword = "s3cret-value"\nusernme = "x"\n', "line 3: [a]: unknown key, the 2nd"),
        (b"[a]\npassword = 1234\n", "line 2: [a]: password must be a string"),
        (b'[a]\nverify = "s3cret-value"\n', "line 2: [a]: verify must be true or false"),
        (b'[a]\nauth = "s3cret-value"\n', "line 2: [a]: auth must be 'session' or 'basic'"),
        (b'password = "s3cret-value"\n', "line 1: a key outside any [entry]"),
        (b'[a]\npassword = "s3cret-value\n', "line 2: not valid TOML"),
        (b"[a]\nusername = 'u'\ns3cret-value\n", "line 3: not valid TOML"),
        (b'[a]\n"s3cret-value" = "x"\n', "line 2: [a]: unknown key, the 1st"),
        (b'[a]\npassword = "x"\npassword = "s3cret-value"\n', "line 3: not valid TOML"),
        (b'[a]\ns3cret-value = "x"\ns3cret-value = "y"\n', "line 3: not valid TOML"),
        (b'[a]\npassword = "\x01s3cret-value"\n', "line 2: not valid TOML"),
    ],
)
def test_errors_name_the_entry_and_key_but_never_the_value(tmp_path, text, expected):
    with pytest.raises(CredentialsError) as caught:
        credentials.load(write(tmp_path, text, 0o600))
    assert expected in caught.value.message
    assert "s3cret" not in str(caught.value) and "s3cret" not in (caught.value.hint or "")


def test_a_secret_never_prints_itself():
    secret = Secret("hunter2")
    assert str(secret) == "***" and "hunter2" not in repr(secret)
    entry = credentials.parse(GOOD).get("default")
    assert "hunter2" not in repr(entry) and "hunter2" not in str(entry)
    assert secret.reveal() == "hunter2"


def test_the_path_comes_from_the_option_then_the_environment_then_etc(monkeypatch, tmp_path):
    monkeypatch.delenv("DIM_CREDENTIALS", raising=False)
    assert str(credentials.resolve_path(None)) == "/etc/dim/credentials"
    monkeypatch.setenv("DIM_CREDENTIALS", str(tmp_path / "env"))
    assert credentials.resolve_path(None) == tmp_path / "env"
    assert credentials.resolve_path(tmp_path / "opt") == tmp_path / "opt"


def test_without_option_or_environment_the_file_beside_the_layout_is_read(tmp_path, monkeypatch):
    monkeypatch.delenv("DIM_CREDENTIALS", raising=False)
    lab = tmp_path / "lab" / "cluster.xml"
    assert credentials.resolve_path(None, lab) == tmp_path / "lab" / "credentials"
    assert credentials.resolve_path(None, Path("/etc/dim/cluster.xml")) == Path(
        "/etc/dim/credentials"
    )
    monkeypatch.setenv("DIM_CREDENTIALS", str(tmp_path / "env"))
    assert credentials.resolve_path(None, lab) == tmp_path / "env"


# -- who may have written the file -------------------------------------------------------------


def test_a_file_owned_by_another_user_is_refused(tmp_path):
    require_root()
    path = write(tmp_path, GOOD, 0o600)
    nobody = pwd.getpwnam("nobody").pw_uid
    os.chown(path, nobody, -1)
    with pytest.raises(CredentialsError) as caught:
        credentials.load(path)
    assert f"belongs to user id {nobody}" in caught.value.message
    assert caught.value.hint == f"chown {os.geteuid()} {path}"


def test_a_file_owned_by_root_is_accepted_for_any_user(tmp_path, monkeypatch):
    require_root()
    path = write(tmp_path, GOOD, 0o600)
    os.chown(path, 0, -1)
    monkeypatch.setattr(os, "geteuid", lambda: 4242)  # another user running dim
    assert credentials.load(path).get("default").username == "admin"


def test_a_symbolic_link_is_refused_even_to_a_good_file(tmp_path):
    target = write(tmp_path, GOOD, 0o600)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(CredentialsError) as caught:
        credentials.load(link)
    assert caught.value.message.startswith(f"{link}: the credentials file is a symbolic link")


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(CredentialsError) as caught:
        credentials.load(fifo)
    assert "not a regular file" in caught.value.message


# -- a secret on the wrong line, through `dim power status` --------------------------------------

SECRET = "Tr0ub4dor-s3cret"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (f'[default]\nusername = "admin"\n{SECRET}\n', 3),  # the password alone on its line
        (f'[default]\nusername = "admin"\npasswrod = "{SECRET}"\n', 3),  # a misspelt key
        (f'[default]\nusername = "admin"\n{SECRET} = "x"\n', 3),  # typed where a key goes
        (f'{SECRET} = "x"\n[default]\nusername = "admin"\n', 1),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_a_secret_on_the_wrong_line_never_reaches_the_output(
    tmp_path, layout_file, capsys, text, line, as_json
):
    path = write(tmp_path, text.encode(), 0o600)
    argv = ["--config", str(layout_file), "--state", str(tmp_path / "state"), "power", "status"]
    argv += ["c01", "--credentials", str(path), *(["--json"] if as_json else [])]
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 2
    assert SECRET not in out and SECRET not in err
    assert err.splitlines()[0].startswith(f"dim: error: {path}: line {line}: ")
    assert [ln for ln in err.splitlines() if not ln.startswith("hint: ")] == [err.splitlines()[0]]
