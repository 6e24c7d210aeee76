"""Hydra's own errors (an unknown option, a misspelt key, an override it cannot parse) said as
gradexp says every mistake: one line naming the key, the value and what is allowed."""

from __future__ import annotations

import re
from pathlib import Path

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

from gradexp.errors import nearest

NOT_FOUND = re.compile(r"Could not (?:find|load) '([^']+)/([^'/]+)'")
NO_KEY = re.compile(r"Could not override '([^']+)'")


def one_line(error: Exception, overrides: list[str], conf_dir: Path) -> str:
    """The error as `key=value: what is wrong; what is allowed`."""
    text = str(error)
    if isinstance(error, MissingConfigException) or NOT_FOUND.search(text):
        return _missing_option(text, overrides, conf_dir)
    if isinstance(error, OverrideParseException):
        lines = [line for line in text.splitlines() if line and not line.startswith("See ")]
        named = re.search(r"override '(.*)'", lines[0]) if lines else None
        why = (lines[-1] if lines else text).split(" expecting ")[0]
        shown = named[1] if named else next(iter(_unparsable(overrides)), " ".join(overrides))
        return (f"{shown}: Hydra cannot parse this override ({why}); quote a value that holds "
                "( ) [ ] { } , or spaces twice, e.g. 'model.expression=\"sin(x)\"'")  # fmt: skip
    if isinstance(error, ConfigCompositionException) and (found := NO_KEY.search(text)):
        key = found[1]
        value = next((o.partition("=")[2] for o in overrides if o.partition("=")[0] == key), "")
        hint = nearest(key, _keys(overrides, key, conf_dir))
        return (
            f"{key}={value}: no such key{f'; did you mean {hint}?' if hint else ''} (a new "
            f"key needs +{key}=…, and only a group's own constructor reads one)"
        )
    cause = f" ({str(error.__cause__).splitlines()[0]})" if error.__cause__ else ""
    return f"{text.splitlines()[0] if text else type(error).__name__}{cause}"


def _unparsable(overrides: list[str]) -> list[str]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, bad = OverridesParser.create(), []
    for item in overrides:
        try:
            parser.parse_overrides([item])
        except OverrideParseException:
            bad.append(item)
    return bad


def _missing_option(text: str, overrides: list[str], conf_dir: Path) -> str:
    found = NOT_FOUND.search(text)
    group, option = (found[1], found[2]) if found else ("?", "?")
    listed = [line.strip() for line in text.splitlines() if line.startswith("\t")
              and "provider=" not in line]  # fmt: skip
    options = listed or sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))
    hint = nearest(option, options)
    given = next((o for o in overrides if o.partition("=")[0].lstrip("+~") == group),
                 f"{group}={option}")  # fmt: skip
    return (f"{given}: no option {option!r} in {group}; choose one of {', '.join(options)}"
            f"{f'; did you mean {hint}?' if hint else ''}")  # fmt: skip


def _keys(overrides: list[str], dropped: str, conf_dir: Path) -> list[str]:
    """Every key of the config the other overrides compose (the bare config if they fail)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from gradexp import VERSION_BASE
    from gradexp.knobs import dotted

    parser, rest = OverridesParser.create(), []
    for item in overrides:  # a sweep's value lists cannot be composed: their keys still are
        try:
            (parsed,) = parser.parse_overrides([item])
        except OverrideParseException:
            continue
        if parsed.key_or_group != dropped and not parsed.is_sweep_override():
            rest.append(item)
    hydra = dropped.startswith("hydra.")  # hydra.launcher.max_members and the like
    for attempt in (rest, []):
        try:
            with initialize_config_dir(config_dir=str(conf_dir), **VERSION_BASE):
                cfg = compose("config", overrides=attempt, return_hydra_config=hydra)
            return dotted(cfg, hydra=hydra)
        except Exception:  # another bad override: the bare config still lists the keys
            continue
    return []
