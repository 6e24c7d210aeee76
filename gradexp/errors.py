"""The one error a user should see for bad input: key, value and what is allowed, on one line."""

import difflib


class ConfigError(ValueError):
    """A config value (or a file it names) that gradexp cannot run with."""

    def __init__(self, key: str, value: object, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value}: {allowed}")

    def under(self, prefix: str) -> "ConfigError":
        """The same error with the key placed under a config group, e.g. model.activation."""
        return ConfigError(f"{prefix}.{self.key}", self.value, self.allowed)


class ExperimentError(ValueError):
    """Bad input to the Python API (gradexp.experiment, .sweep, .load): the CLI's one line."""


def check_choice(key: str, value: object, allowed) -> None:
    if value not in allowed:
        raise ConfigError(key, value, f"not allowed; choose one of {', '.join(map(str, allowed))}")


def check_number(key: str, value: object, *, low=None, high=None, integer=False, strict=True,
                 finite=True):  # fmt: skip
    """Return value if it is a number in range (and finite, unless finite=False), else raise a
    ConfigError saying what is allowed."""
    kind = "an integer" if integer else "a number"
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if strict else '≥'} {low}")
    if high is not None:
        bounds.append(f"≤ {high}")
    want = f"must be {kind}" + (f" {' and '.join(bounds)}" if bounds else "")
    ok_type = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type):
        raise ConfigError(key, repr(value) if isinstance(value, str) else value, want)
    if value != value or (low is not None and (value <= low if strict else value < low)):
        raise ConfigError(key, value, want)
    if finite and not integer and value in (float("inf"), float("-inf")):
        raise ConfigError(key, value, want.replace("a number", "a finite number"))
    if high is not None and value > high:
        raise ConfigError(key, value, want)
    return value


def nearest(name: str, candidates: list[str]) -> str | None:
    """The candidate a misspelt or misplaced name most likely meant: one whose last part is the
    name's last part (lr → optimizer.lr), else the closest spelling among its siblings
    (optimizer.lrr → optimizer.lr), else the closest spelling of all."""
    parent, _, tail = name.rpartition(".")
    same = [c for c in candidates if c.rpartition(".")[2] == tail]
    if same:
        return same[0]
    siblings = {c.rpartition(".")[2]: c for c in candidates if c.rpartition(".")[0] == parent}
    close = difflib.get_close_matches(tail, list(siblings), n=1, cutoff=0.6)
    if close:
        return siblings[close[0]]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return close[0] if close else None
