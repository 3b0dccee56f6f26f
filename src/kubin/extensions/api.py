"""What an extension's entry module receives in `setup(api)`: the few ways it can plug into Kubin.

Kept small and stable on purpose (see extensions/README.md): tabs, job hooks, model hooks, its own
settings section, and a logger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HOOKS = ("before_job", "after_job", "model_loaded", "model_unloaded")


@dataclass
class ExtensionAPI:
    name: str  # the extension's folder name
    settings: dict[str, Any] = field(default_factory=dict)  # its section of the config
    tabs: list[tuple[str, Callable[[Any], None]]] = field(default_factory=list)
    hooks: dict[str, list[Callable[..., Any]]] = field(default_factory=lambda: {h: [] for h in HOOKS})

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"kubin.ext.{self.name}")

    def add_tab(self, title: str, build: Callable[[Any], None]) -> None:
        """`build(ctx)` is called inside a new gr.Tab when the UI is built."""
        self.tabs.append((title, build))

    def on(self, hook: str, fn: Callable[..., Any]) -> None:
        """Register `fn` for one of HOOKS: before_job(job) may return changed params; after_job(job, results)."""
        if hook not in HOOKS:
            raise ValueError(f"Unknown hook {hook!r}; known hooks: {', '.join(HOOKS)}.")
        self.hooks[hook].append(fn)
