"""Manifest vars whose names look like secrets get a warning pointing to `config set --secret`."""

from __future__ import annotations

from conveyor.domain.manifest import parse_manifest, secret_looking, secret_var_warnings


def test_secret_looking_names() -> None:
    names = ["DB_PASSWORD", "GITHUB_TOKEN", "client_secret", "STRIPE_KEY", "KEY", "DEBUG", "KEYBOARD", "MONKEY_BUSINESS",
             "LOG_LEVEL", "PASSWORD_MIN_LENGTH"]
    assert secret_looking(names) == ["DB_PASSWORD", "GITHUB_TOKEN", "KEY", "PASSWORD_MIN_LENGTH", "STRIPE_KEY",
                                     "client_secret"]


def test_warnings_name_the_file_the_section_and_the_fix() -> None:
    m = parse_manifest({"run": {"web": "x"}, "env": {"production": {"vars": {"DB_PASSWORD": "pw", "DEBUG": "0"}},
                                                     "staging": {"vars": {"LOG": "1"}}}})
    (w,) = secret_var_warnings(m)
    assert w.startswith("conveyor.toml: [env.production] vars.DB_PASSWORD looks like a secret")
    assert "conveyor config set APP --env production --secret DB_PASSWORD=" in w
    assert "pw" not in w.replace("DB_PASSWORD", "")
    assert secret_var_warnings(parse_manifest({"run": {"web": "x"}})) == []
