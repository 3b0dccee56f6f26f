"""Configuration: configs/kubin.default.yaml < the user file < CLI flags, merged with OmegaConf.

A user file that cannot be read is reported and skipped, never fatal. The Settings tab saves to the
user file by merging into what is there, so hand-written keys survive.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kubin.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "kubin.default.yaml"
DEFAULT_USER_CONFIG = REPO_ROOT / "configs" / "kubin.user.yaml"


@dataclass
class LoadedConfig:
    """The merged configuration, where the user file lives, and what went wrong reading it."""

    cfg: DictConfig
    user_path: Path
    warnings: list[str] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        value = OmegaConf.select(self.cfg, key, default=default)
        return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value

    def set(self, key: str, value: Any) -> None:
        OmegaConf.update(self.cfg, key, value, merge=False)


def load_config(
    user_path: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    default_path: str | os.PathLike = DEFAULT_CONFIG,
    defaults: dict[str, Any] | None = None,
) -> LoadedConfig:
    """Merge the defaults (the file, then dotted-key `defaults` such as Colab's), the user file (if present
    and readable) and dotted-key overrides (command-line flags)."""
    cfg = OmegaConf.load(default_path)
    for key, value in (defaults or {}).items():
        OmegaConf.update(cfg, key, value, merge=True)
    user = Path(user_path) if user_path else DEFAULT_USER_CONFIG
    warnings: list[str] = []
    if user.exists():
        try:
            user_cfg = OmegaConf.load(user)
            if user_cfg is None or isinstance(user_cfg, DictConfig):
                cfg = OmegaConf.merge(cfg, user_cfg or {})
            else:
                raise ValueError("its top level is not a mapping")
        except Exception as exc:  # any parse or merge error: report, keep defaults
            warnings.append(
                f"Could not read config file {user} ({_first_line(exc)}); using the defaults instead."
            )
    elif user_path:
        warnings.append(f"Config file {user} does not exist yet; it will be created when settings are saved.")
    for key, value in (overrides or {}).items():
        if value is not None:
            OmegaConf.update(cfg, key, value, merge=True)
    return LoadedConfig(cfg, user, warnings)


def save_user_settings(user_path: str | os.PathLike, updates: dict[str, Any]) -> Path:
    """Put dotted-key `updates` into the user file (each key's value replaced, the file's other keys kept)
    and write it atomically.

    A user file that cannot be parsed is kept next to the new one as `<name>.bad` rather than lost.
    """
    path = Path(user_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    current = OmegaConf.create({})
    if path.exists():
        try:
            loaded = OmegaConf.load(path)
            if isinstance(loaded, DictConfig):
                current = loaded
            elif loaded is not None:
                raise ValueError("not a mapping")
        except Exception:
            path.replace(path.with_name(path.name + ".bad"))
    for key, value in updates.items():  # replaced, not merged: a default cleared in the UI leaves the file
        OmegaConf.update(current, key, value, merge=False)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".yaml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(OmegaConf.to_yaml(current))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"Could not write the config file {path}.") from None
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
