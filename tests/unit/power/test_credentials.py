"""The credentials file: mode 0600 or refused, TOML entries by name, secrets that never print."""

from __future__ import annotations

import pytest

from dim.errors import CredentialsError
from dim.power import credentials
from dim.power.credentials import Secret

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
        (b'[a]\npassword = "s3cret-value"\nusernme = "x"\n', "unknown key 'usernme'"),
        (b"[a]\npassword = 1234\n", "password must be a string"),
        (b'[a]\nverify = "s3cret-value"\n', "verify must be true or false"),
        (b'password = "s3cret-value"\n', "must be a [section]"),
        (b'[a]\npassword = "s3cret-value\n', "not a valid TOML file"),
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
