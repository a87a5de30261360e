"""dim.api.tokens: tokens shown once, kept as hashes, roles ordered, a bad file refused."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest

from dim.api.tokens import ROLES, TokenFile, digest, resolve_path
from dim.errors import UsageError


def test_a_token_is_checked_by_its_hash_and_the_file_never_holds_it(tmp_path):
    tokens = TokenFile(tmp_path / "api-tokens")
    secret = tokens.add("ops", "admin")
    assert secret.startswith("dim_") and len(secret) > 40
    assert secret not in (tmp_path / "api-tokens").read_text()
    assert stat.S_IMODE((tmp_path / "api-tokens").stat().st_mode) == 0o600
    found = tokens.check(secret)
    assert (found.name, found.role, found.sha256) == ("ops", "admin", digest(secret))
    assert tokens.check(secret + "x") is None
    assert tokens.check("not-even-prefixed") is None


def test_two_tokens_never_share_a_secret(tmp_path):
    tokens = TokenFile(tmp_path / "t")
    assert tokens.add("a", "reader") != tokens.add("b", "reader")


def test_an_admin_may_do_what_a_reader_may_and_not_the_other_way(tmp_path):
    tokens = TokenFile(tmp_path / "t")
    admin = tokens.check(tokens.add("a", "admin"))
    reader = tokens.check(tokens.add("r", "reader"))
    assert admin.may("reader") and admin.may("admin")
    assert reader.may("reader") and not reader.may("admin")
    assert ROLES == ("reader", "admin")


def test_a_missing_file_holds_no_token(tmp_path):
    assert TokenFile(tmp_path / "absent").tokens() == []


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        ("{}", 0o600, "not an API token file"),
        ("not json", 0o600, "not an API token file"),
        ('{"tokens": [{"name": "x"}]}', 0o600, "not an API token file"),
        ('{"tokens": []}', 0o640, "open to others (mode 0640)"),
        ('{"tokens": []}', 0o602, "open to others (mode 0602)"),
    ],
)
def test_a_bad_token_file_is_refused_with_its_name(tmp_path, content, mode, message):
    path = tmp_path / "api-tokens"
    path.write_text(content)
    path.chmod(mode)
    with pytest.raises(UsageError, match=re.escape(message)) as refused:
        TokenFile(path).tokens()
    assert str(path) in refused.value.message


def test_a_symbolic_link_is_refused(tmp_path):
    real = tmp_path / "real"
    TokenFile(real).add("ops", "admin")
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(UsageError, match="symbolic link"):
        TokenFile(tmp_path / "link").tokens()


def test_an_unknown_role_a_bad_name_or_a_duplicate_is_refused_and_nothing_written(tmp_path):
    tokens = TokenFile(tmp_path / "t")
    tokens.add("ops", "admin")
    before = (tmp_path / "t").read_bytes()
    for name, role, message in [
        ("x", "root", "unknown role"),
        ("", "reader", "invalid token name"),
        ("-x", "reader", "invalid token name"),
        ("a\x1b[31m", "reader", "invalid token name"),
        ("ops", "reader", "exists"),
    ]:
        with pytest.raises(UsageError, match=message):
            tokens.add(name, role)
    assert (tmp_path / "t").read_bytes() == before


def test_remove_takes_the_token_away_and_an_unknown_name_is_an_error(tmp_path):
    tokens = TokenFile(tmp_path / "t")
    secret = tokens.add("ops", "admin")
    tokens.remove("ops")
    assert tokens.check(secret) is None
    assert json.loads((tmp_path / "t").read_text()) == {"tokens": []}
    with pytest.raises(UsageError, match="no token named 'ops'"):
        tokens.remove("ops")


def test_the_file_is_the_option_else_the_environment_else_beside_the_layout(tmp_path, monkeypatch):
    layout = tmp_path / "etc" / "cluster.xml"
    monkeypatch.delenv("DIM_API_TOKENS", raising=False)
    assert resolve_path(None, layout) == tmp_path / "etc" / "api-tokens"
    monkeypatch.setenv("DIM_API_TOKENS", "/x/tokens")
    assert str(resolve_path(None, layout)) == "/x/tokens"
    assert str(resolve_path("/y", layout)) == "/y"
    assert os.fspath(resolve_path(tmp_path / "z", layout)) == os.fspath(tmp_path / "z")
