"""The YAML configuration, parsed once into one frozen object (admin-interface.md).

Every problem names the key and the file. Unknown keys, wrong types and bad
values are errors. Relative paths are taken relative to the config file's folder.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .jids import JidError, bare

DEFAULT_PATH = Path("/etc/keysrv/keysrv.yml")
ROSTER_RULES = ("both", "either", "item", "none")
LOG_LEVELS = ("debug", "info", "warning", "error")
SOFTWARE = ("auto", "prosody", "ejabberd")
#: Why allow_occupants cannot work on ejabberd (shared by `check` and `run`).
OCCUPANTS_ON_EJABBERD = (
    "ejabberd shows occupants' real JIDs only to occupants of a room, so keysrv cannot "
    "check occupancy there: set policy.allow_occupants to false (room members, admins "
    "and owners are still allowed)"
)


class ConfigError(Exception):
    """One or more problems; each is a full line naming the file and the key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ComponentConfig:
    jid: str
    server: str
    port: int
    secret: str
    software: str = "auto"  # the XMPP server: auto (detected at connect) | prosody | ejabberd


@dataclass(frozen=True, slots=True)
class StorageConfig:
    database: Path
    kek_file: Path


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    roster: str = "both"
    allow_occupants: bool = False
    allow_remote: bool = True
    rotation_max_age: float = 7 * 86400.0
    max_batch: int = 100
    require_wrap: bool = False


@dataclass(frozen=True, slots=True)
class CacheConfig:
    roster_ttl: float = 5.0
    muc_ttl: float = 5.0


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    lookup_timeout: float = 5.0
    rate: float = 20.0  # requests per second per bare JID, sustained
    burst: int = 100


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    component: ComponentConfig
    domains: tuple[str, ...]
    muc_services: tuple[str, ...]
    storage: StorageConfig
    policy: PolicyConfig
    cache: CacheConfig
    limits: LimitsConfig
    log_level: str = "info"


def default_path() -> Path:
    env = os.environ.get("KEYSRV_CONFIG")
    return Path(env) if env else DEFAULT_PATH


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> float:
    """`30`, `30s`, `5m`, `2h`, `7d` -> seconds. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 2h or 7d")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"expected a duration of 0 or more seconds, got {value!r}")
        return float(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return float(m.group(1)) * _UNIT[m.group(2)]
    raise ValueError(f"expected a duration such as 30s, 5m, 2h or 7d, got {value!r}")


class _Reader:
    """Walks the YAML mapping, collecting every problem instead of stopping at the first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []

    def problem(self, key: str, text: str) -> None:
        self.problems.append(f"{self.path}: {key}: {text}")

    def section(self, data: dict[str, Any], name: str, known: set[str], required: bool) -> dict:
        value = data.get(name)
        if value is None:
            if required:
                self.problem(name, "missing (required)")
            return {}
        if not isinstance(value, dict):
            self.problem(name, f"must be a mapping, got {type(value).__name__}")
            return {}
        for key in value:
            if key not in known:
                self.problem(f"{name}.{key}", "unknown key")
        return value

    def get(self, data: dict, key: str, conv: Callable[[Any], Any], default: Any) -> Any:
        if key.split(".")[-1] not in data:
            return default
        raw = data[key.split(".")[-1]]
        try:
            return conv(raw)
        except (ValueError, TypeError) as exc:
            self.problem(key, str(exc))
            return default


def _string(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value.strip()


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _int_range(lo: int, hi: int) -> Callable[[object], int]:
    def conv(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"must be a whole number from {lo} to {hi}, got {value!r}")
        return value

    return conv


def _positive(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"must be a number above 0, got {value!r}")
    return float(value)


def _choice(options: tuple[str, ...]) -> Callable[[object], str]:
    def conv(value: object) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")
        return str(value)

    return conv


def _domain(value: object) -> str:
    text = _string(value)
    try:
        jid = bare(text)
    except JidError as exc:
        raise ValueError(f"{text!r} is not a domain: {exc}") from None
    if "@" in jid or "/" in text:
        raise ValueError(f"{text!r} is a JID, not a domain")
    return jid


def _domains(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"must be a list of domains, got {value!r}")
    return tuple(_domain(v) for v in value)


def _positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be above 0")
    return seconds


def _rotation_age(value: object) -> float:
    seconds = parse_duration(value)
    if seconds < 1:
        raise ValueError("must be at least 1 second")
    return seconds


def load_config(path: Path) -> Config:
    """Read and validate `path`; raises ConfigError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        raise ConfigError([f"{path}: not valid YAML{line}: {exc}"]) from None
    return parse_config(data, path)


def parse_config(data: object, path: Path) -> Config:
    r = _Reader(path)
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the config must be a YAML mapping"])
    sections = {"component", "domains", "muc_services", "storage", "policy", "cache"}
    sections |= {"limits", "logging"}
    for key in data:
        if key not in sections:
            r.problem(str(key), "unknown key")

    comp = r.section(
        data, "component", {"jid", "server", "port", "secret", "secret_file", "software"}, True
    )
    present = isinstance(data.get("component"), dict)
    jid = r.get(comp, "component.jid", _domain, "") if "jid" in comp else ""
    if present and "jid" not in comp:
        r.problem("component.jid", "missing (required)")
    secret = _read_secret(r, comp, path.parent, present)
    component = ComponentConfig(
        jid=jid,
        server=r.get(comp, "component.server", _string, "127.0.0.1"),
        port=r.get(comp, "component.port", _int_range(1, 65535), 5347),
        secret=secret,
        software=r.get(comp, "component.software", _choice(SOFTWARE), "auto"),
    )

    if "domains" not in data:
        r.problem("domains", "missing (required)")
    domains = r.get(data, "domains", _domains, ())
    if "domains" in data and not domains and not r.problems:
        r.problem("domains", "must name at least one domain")
    muc = r.get(data, "muc_services", _domains, ())

    st = r.section(data, "storage", {"database", "kek_file"}, True)
    storage = StorageConfig(
        database=_path(r, st, "storage.database", path.parent),
        kek_file=_path(r, st, "storage.kek_file", path.parent),
    )

    pol = r.section(data, "policy", set(PolicyConfig.__slots__), False)
    d = PolicyConfig()
    policy = PolicyConfig(
        roster=r.get(pol, "policy.roster", _choice(ROSTER_RULES), d.roster),
        allow_occupants=r.get(pol, "policy.allow_occupants", _bool, d.allow_occupants),
        allow_remote=r.get(pol, "policy.allow_remote", _bool, d.allow_remote),
        rotation_max_age=r.get(
            pol, "policy.rotation_max_age", _rotation_age, d.rotation_max_age
        ),
        max_batch=r.get(pol, "policy.max_batch", _int_range(1, 1000), d.max_batch),
        require_wrap=r.get(pol, "policy.require_wrap", _bool, d.require_wrap),
    )

    ca = r.section(data, "cache", set(CacheConfig.__slots__), False)
    dc = CacheConfig()
    cache = CacheConfig(
        roster_ttl=r.get(ca, "cache.roster_ttl", parse_duration, dc.roster_ttl),
        muc_ttl=r.get(ca, "cache.muc_ttl", parse_duration, dc.muc_ttl),
    )

    li = r.section(data, "limits", set(LimitsConfig.__slots__), False)
    dl = LimitsConfig()
    limits = LimitsConfig(
        lookup_timeout=r.get(li, "limits.lookup_timeout", _positive_duration, dl.lookup_timeout),
        rate=r.get(li, "limits.rate", _positive, dl.rate),
        burst=r.get(li, "limits.burst", _int_range(1, 1_000_000), dl.burst),
    )

    if component.software == "ejabberd" and policy.allow_occupants:
        r.problem("policy.allow_occupants", OCCUPANTS_ON_EJABBERD)

    lg = r.section(data, "logging", {"level"}, False)
    level = r.get(lg, "logging.level", _choice(LOG_LEVELS), "info")

    if r.problems:
        raise ConfigError(r.problems)
    return Config(
        path=path,
        component=component,
        domains=domains,
        muc_services=muc,
        storage=storage,
        policy=policy,
        cache=cache,
        limits=limits,
        log_level=level,
    )


def _path(r: _Reader, section: dict, key: str, base: Path) -> Path:
    name = key.split(".")[-1]
    if name not in section:
        r.problem(key, "missing (required)")
        return Path()
    value = r.get(section, key, _string, "")
    return (base / value) if value else Path()


def _read_secret(r: _Reader, comp: dict, base: Path, present: bool) -> str:
    if "secret" in comp and "secret_file" in comp:
        r.problem("component.secret", "give secret or secret_file, not both")
        return ""
    if "secret" in comp:
        return r.get(comp, "component.secret", _string, "")
    if "secret_file" in comp:
        file = r.get(comp, "component.secret_file", _string, "")
        if not file:
            return ""
        try:
            secret = (base / file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            r.problem("component.secret_file", f"cannot read {base / file}: {exc.strerror}")
            return ""
        if not secret:
            r.problem("component.secret_file", f"{base / file} is empty")
        return secret
    if present:
        r.problem("component.secret", "missing (required; or secret_file)")
    return ""
