from __future__ import annotations

from pathlib import Path

import pytest

from keysrv.config import ConfigError, load_config, parse_duration

MINIMAL = """
component: {jid: keys.example.com, secret: s3cret}
domains: [example.com]
storage: {database: keys.sqlite3, kek_file: kek}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keysrv.yml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return info.value.problems


def test_minimal_config_gets_defaults_and_relative_paths(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.component.server == "127.0.0.1" and cfg.component.port == 5347
    assert cfg.storage.database == tmp_path / "keys.sqlite3"
    assert cfg.policy.roster == "both" and cfg.policy.rotation_max_age == 7 * 86400
    assert cfg.policy.max_batch == 100 and cfg.cache.roster_ttl == 5
    assert cfg.muc_services == ()


def test_example_config_is_valid():
    example = Path(__file__).parents[2] / "config" / "keysrv.example.yml"
    cfg = load_config(example)
    assert cfg.component.jid == "keys.example.com"


@pytest.mark.parametrize(
    ("value", "seconds"), [(30, 30), ("30", 30), ("45s", 45), ("5m", 300), ("2h", 7200),
                           ("7d", 604800), ("1.5h", 5400)])
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["7w", "-1", "", "soon", True])
def test_bad_durations(value):
    with pytest.raises(ValueError):
        parse_duration(value)


def test_every_problem_names_key_and_file(tmp_path):
    found = problems(tmp_path, MINIMAL + """
policy: {roster: friends, max_batch: 0, rotation_max_age: 3w, colour: blue}
cache: {roster_ttl: -5}
surprise: 1
""")
    text = "\n".join(found)
    for key in ("policy.roster", "policy.max_batch", "policy.rotation_max_age",
                "policy.colour", "cache.roster_ttl", "surprise"):
        assert key in text, key
    assert all(line.startswith(str(tmp_path / "keysrv.yml")) for line in found)
    assert len(found) == 6


def test_required_keys(tmp_path):
    text = "\n".join(problems(tmp_path, "logging: {level: info}\n"))
    for key in ("component", "domains", "storage"):
        assert f": {key}: missing" in text
    text = "\n".join(problems(tmp_path, "component: {jid: k.example.com}\ndomains: [a.b]\n"
                                        "storage: {database: x}\n"))
    assert "component.secret: missing" in text and "storage.kek_file: missing" in text


def test_secret_file_and_bad_yaml(tmp_path):
    (tmp_path / "secret").write_text("from-file\n")
    cfg = load_config(write(tmp_path, MINIMAL.replace("secret: s3cret", "secret_file: secret")))
    assert cfg.component.secret == "from-file"
    assert "not valid YAML" in problems(tmp_path, "component: [")[0]
    assert "is a JID, not a domain" in "\n".join(
        problems(tmp_path, MINIMAL.replace("[example.com]", "[user@example.com]")))


@pytest.mark.parametrize(("snippet", "lang"), [("prosody/keysrv.cfg.lua", "lua"),
                                               ("ejabberd/keysrv.yml", "yaml")])
def test_admin_guide_quotes_the_server_snippets_verbatim(snippet, lang):
    root = Path(__file__).parents[2]
    text = (root / "config" / snippet).read_text()
    assert f"```{lang}\n{text}```" in (root / "docs" / "admin.md").read_text()


def test_empty_component_section_still_requires_jid_and_secret(tmp_path):
    text = "\n".join(problems(tmp_path, MINIMAL.replace(
        "component: {jid: keys.example.com, secret: s3cret}", "component: {}")))
    assert "component.jid: missing" in text and "component.secret: missing" in text


@pytest.mark.parametrize(("key", "value"), [
    ("limits", "{rate: .nan}"), ("limits", "{rate: .inf}"), ("cache", "{roster_ttl: .inf}"),
    ("policy", "{rotation_max_age: .inf}"), ("policy", "{rotation_max_age: 0.4}"),
    ("limits", "{lookup_timeout: .nan}")])
def test_non_finite_and_too_small_numbers_are_refused(tmp_path, key, value):
    found = problems(tmp_path, MINIMAL + f"{key}: {value}\n")
    assert len(found) == 1 and f"{key}." in found[0]


@pytest.mark.parametrize("software", ["auto", "prosody", "ejabberd"])
def test_allow_occupants_is_refused_only_when_the_server_is_ejabberd(tmp_path, software):
    text = MINIMAL.replace("secret: s3cret}", f"secret: s3cret, software: {software}}}")
    assert load_config(write(tmp_path, text)).component.software == software
    with_occupants = text + "policy: {allow_occupants: true}\n"
    if software != "ejabberd":
        assert load_config(write(tmp_path, with_occupants)).policy.allow_occupants
        return
    (line,) = problems(tmp_path, with_occupants)
    assert line.startswith(f"{tmp_path / 'keysrv.yml'}: policy.allow_occupants: ejabberd shows")


def test_unknown_server_software_is_refused(tmp_path):
    text = MINIMAL.replace("secret: s3cret}", "secret: s3cret, software: openfire}")
    assert problems(tmp_path, text) == [
        f"{tmp_path / 'keysrv.yml'}: component.software: must be one of auto, prosody, "
        "ejabberd, got 'openfire'"
    ]
