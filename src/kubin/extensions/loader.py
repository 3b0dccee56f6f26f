"""Finding, checking and loading extensions. Every failure is caught, logged with its traceback and
recorded as the extension's status; Kubin and the other extensions carry on."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubin import __version__
from kubin.errors import KubinError
from kubin.extensions.api import ExtensionAPI

log = logging.getLogger(__name__)
MANIFEST = "extension.yaml"


@dataclass
class Extension:
    folder: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"  # ok, disabled, needs-install, failed
    error: str = ""
    missing: list[str] = field(default_factory=list)  # requirements not installed
    api: ExtensionAPI | None = None

    @property
    def name(self) -> str:
        return self.folder.name

    def status_line(self) -> str:
        if self.status == "failed":
            return f"{self.name} failed: {self.error}"
        if self.status == "needs-install":
            return f"{self.name} needs-install: {', '.join(self.missing)}"
        return f"{self.name} {self.status}"


def discover(
    root: str | Path,
    disabled: list[str] | None = None,
    order: list[str] | None = None,
    enabled: list[str] | None = None,
) -> list[Extension]:
    """Every folder under root with a manifest, in the configured order, then alphabetically. One named in
    `disabled` is disabled; so is one whose manifest says `enabled_by_default: false` (the bundled example)
    unless `enabled` names it."""
    root = Path(root)
    if not root.is_dir():
        return []
    folders = sorted(p for p in root.iterdir() if p.is_dir() and (p / MANIFEST).is_file())
    rank = {name: i for i, name in enumerate(order or [])}
    folders.sort(key=lambda p: (rank.get(p.name, len(rank)), p.name))
    found = []
    for folder in folders:
        ext = Extension(folder)
        _read_manifest(ext)
        switched_on = enabled_by_default(ext) or folder.name in (enabled or [])
        if ext.status == "ok" and (folder.name in (disabled or []) or not switched_on):
            ext.status = "disabled"
        found.append(ext)
    return found


def enabled_by_default(ext: Extension) -> bool:
    """Whether `ext` loads when the config names it in neither `extensions.disabled` nor `extensions.enabled`."""
    return ext.manifest.get("enabled_by_default", True) is not False


def load_all(
    extensions: list[Extension],
    settings: dict[str, dict[str, Any]] | None = None,
    user_config: Path | None = None,
) -> list[Extension]:
    """Import and set up every extension still "ok"; return them all with their final status.
    With `user_config`, an extension's save_settings writes its section of that file."""
    for ext in extensions:
        if ext.status != "ok":
            continue
        ext.missing = missing_requirements(ext.manifest.get("requirements") or [])
        if ext.missing:
            ext.status = "needs-install"
            continue
        try:
            api = ExtensionAPI(ext.name, dict((settings or {}).get(ext.name) or {}))
            if user_config is not None:
                api.saver = _settings_saver(Path(user_config), ext.name)
            module = _import_entry(ext)
            setup = getattr(module, "setup", None)
            if setup is None:
                raise AttributeError(f"{ext.manifest.get('entry', 'main.py')} defines no setup(api) function")
            setup(api)
            ext.api = api
        except BaseException as exc:  # SyntaxError, ImportError, anything its code raises
            if isinstance(exc, KeyboardInterrupt):
                raise
            fail(ext, exc)
    return extensions


def fail(ext: Extension, exc: BaseException) -> None:
    """Mark an extension failed, keeping one line for the UI and the traceback for the log."""
    ext.status = "failed"
    ext.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    log.error("Extension %s failed and is skipped:\n%s", ext.name, "".join(traceback.format_exception(exc)))


def missing_requirements(requirements: list[str]) -> list[str]:
    from packaging.requirements import Requirement

    missing = []
    for text in requirements:
        req = Requirement(text)
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            missing.append(text)
    return missing


def _read_manifest(ext: Extension) -> None:
    from omegaconf import OmegaConf
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        manifest = OmegaConf.to_container(OmegaConf.load(ext.folder / MANIFEST))
        if not isinstance(manifest, dict):
            raise ValueError("the manifest is not a mapping")
        ext.manifest = manifest
        wanted = str(manifest.get("kubin") or "")
        if wanted and not SpecifierSet(wanted).contains(__version__, prereleases=True):
            ext.status, ext.error = "failed", f"needs kubin {wanted}, this is {__version__}"
    except (ValueError, InvalidSpecifier, OSError) as exc:
        ext.status, ext.error = "failed", f"bad {MANIFEST}: {str(exc).splitlines()[0]}"
    except Exception as exc:  # YAML syntax errors come in several types
        ext.status, ext.error = "failed", f"bad {MANIFEST}: {type(exc).__name__}: {str(exc).splitlines()[0]}"


def _import_entry(ext: Extension):
    entry = ext.folder / str(ext.manifest.get("entry") or "main.py")
    if not entry.is_file():
        raise FileNotFoundError(f"entry module {entry.name} not found")
    module_name = f"kubin_extension_{ext.name.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(module_name, entry)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _settings_saver(user_config: Path, name: str):
    def save(values: dict[str, Any]) -> None:
        from kubin.config import save_user_settings

        save_user_settings(user_config, {f"extensions.settings.{name}.{k}": v for k, v in values.items()})

    return save


def run_hooks(
    extensions: list[Extension], hook: str, *args: Any, values: dict[str, dict[str, Any]] | None = None
) -> list[Any]:
    """Call `hook` of every loaded extension; one that raises is marked failed and skipped from then on.

    `values` holds each extension's own widget values (by folder name); a hook that takes one more
    argument than `args` gets its extension's."""
    answers = []
    for ext in extensions:
        if ext.status != "ok" or ext.api is None:
            continue
        for fn in ext.api.hooks.get(hook, []):
            try:
                extra = (values or {}).get(ext.name, {})
                answers.append(fn(*args, extra) if takes(fn, len(args) + 1) else fn(*args))
            except (
                KubinError
            ):  # the user's mistake (an unknown style...): theirs to fix, the extension is fine
                raise
            except Exception as exc:
                fail(ext, exc)
                break
    return answers


def takes(fn, count: int) -> bool:
    """Whether fn accepts `count` positional arguments."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= count or any(p.kind is p.VAR_POSITIONAL for p in params)


def install_requirements(ext: Extension, emit=print) -> bool:
    """pip-install an extension's missing requirements into this Python, streaming pip's output lines to
    `emit`; True when pip succeeded. Only ever called on the user's say-so (a flag or the tab's button)."""
    import subprocess

    if not ext.missing:
        return True
    command = [sys.executable, "-m", "pip", "install", *ext.missing]
    emit(f"$ {' '.join(command)}")
    log.info("Installing the requirements of extension %s: %s", ext.name, ", ".join(ext.missing))
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            line = line.rstrip()
            log.info("pip: %s", line)
            emit(line)
    if proc.returncode != 0:
        emit(f"pip failed with exit code {proc.returncode}.")
        return False
    importlib.invalidate_caches()  # so packages in folders created by this install import at once
    ext.missing = missing_requirements(ext.manifest.get("requirements") or [])
    return not ext.missing
