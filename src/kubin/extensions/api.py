"""What an extension's entry module receives in `setup(api)`: the few ways it can plug into Kubin.

Kept small and stable on purpose (see extensions/README.md): tabs, job hooks, model hooks, its own
settings section, and a logger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

HOOKS = ("before_job", "after_job", "model_loaded", "model_unloaded")
# Where an extension's tab stands: "tools" nests it in the Tools tab (the default, so the top row keeps to the
# task tabs however many tools are installed), "top" puts it in the top row beside the task tabs.
TAB_GROUPS = ("tools", "top")


class Tab(NamedTuple):
    title: str
    build: Callable[[Any], None]
    group: str = "tools"


class Command(NamedTuple):
    """A command line of an extension: `kubin tool NAME ARGS`."""

    name: str
    run: Callable[[Any, Any], int]  # run(engine, args) -> exit code
    configure: Callable[[Any], None] | None = None  # configure(argparse parser): its own flags
    help: str = ""


class Route(NamedTuple):
    """A REST route of an extension: /kubin/api/v1/ext/NAME/PATH."""

    path: str
    make: Callable[[Any], Callable[..., Any]]  # make(RouteContext) -> the endpoint, as FastAPI takes it
    methods: tuple[str, ...] = ("POST",)
    summary: str = ""


@dataclass
class RouteContext:
    """What an extension's REST endpoint is made with (see ExtensionAPI.add_route)."""

    engine: Any  # the app's engine: run tool work through engine.run_tool / submit_tool
    # check_folder(path, what): refuses a server folder the API may not read (the api_folder_roots setting)
    check_folder: Callable[[str, str], None]
    owner: Callable[[Any], str]  # owner(request): the client as History names it (API, CLI)


@dataclass
class Controls:
    """Widgets an extension adds to the tabs of some tasks; their values reach its before_job hook."""

    title: str
    build: Callable[..., dict[str, Any]]  # build(ctx, task[, tab_widgets]) -> {name: Gradio component}
    tasks: tuple[str, ...] | None = None  # None: every generation tab


@dataclass
class ExtensionAPI:
    name: str  # the extension's folder name
    settings: dict[str, Any] = field(default_factory=dict)  # its section of the config
    tabs: list[Tab] = field(default_factory=list)
    hooks: dict[str, list[Callable[..., Any]]] = field(default_factory=lambda: {h: [] for h in HOOKS})
    controls: list[Controls] = field(default_factory=list)
    send_targets: list[tuple[str, str]] = field(default_factory=list)  # (key, button label)
    commands: list[Command] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    # Writes {key: value} into this extension's section of the user config file (set by the loader).
    saver: Callable[[dict[str, Any]], Any] | None = None

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"kubin.ext.{self.name}")

    def add_tab(self, title: str, build: Callable[[Any], None], group: str = "tools") -> None:
        """`build(ctx)` is called inside a new gr.Tab when the UI is built; `group` says where the tab stands
        (see TAB_GROUPS): inside the Tools tab, or "top" in the top row."""
        if group not in TAB_GROUPS:
            raise ValueError(f"Unknown tab group {group!r}; known groups: {', '.join(TAB_GROUPS)}.")
        self.tabs.append(Tab(title, build, group))

    def on(self, hook: str, fn: Callable[..., Any]) -> None:
        """Register `fn` for one of HOOKS: before_job(task, params[, values]) may return changed params;
        after_job(task, results); model_loaded(model_id) / model_unloaded(model_id)."""
        if hook not in HOOKS:
            raise ValueError(f"Unknown hook {hook!r}; known hooks: {', '.join(HOOKS)}.")
        self.hooks[hook].append(fn)

    def add_controls(
        self, build: Callable[..., dict[str, Any]], tasks: list[str] | None = None, title: str = ""
    ) -> None:
        """Add widgets to the tabs of `tasks` (all generation tabs when None), in a panel titled `title`.
        `build(ctx, task)` creates them and returns {name: component}; a build that takes a third argument
        gets the tab's own widgets built so far ({"prompt": ..., "negative_prompt": ...}), to follow them. For
        each job, a before_job hook that takes a third argument receives {name: value} of this tab's widgets."""
        self.controls.append(Controls(title or self.name, build, tuple(tasks) if tasks else None))

    def add_send_target(self, key: str, label: str) -> None:
        """Put a "→ label" button under every result gallery. The extension's tab says which component
        receives the image: `ctx.receive(key, component)` inside its build(ctx)."""
        self.send_targets.append((key, label))

    def add_command(
        self,
        name: str,
        run: Callable[[Any, Any], int],
        configure: Callable[[Any], None] | None = None,
        help: str = "",
    ) -> None:
        """`kubin tool NAME ARGS` runs `run(engine, args)` (its return value is the exit code), after
        `configure(parser)` added the command's flags to an argparse parser. The engine is the command line's
        own (its queue, models and output folder); run tool work through `engine.run_tool`/`submit_tool`."""
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"A command name is letters, digits, - and _ (got {name!r}).")
        self.commands.append(Command(name, run, configure, help))

    def add_route(
        self,
        path: str,
        make: Callable[[RouteContext], Callable[..., Any]],
        methods: tuple[str, ...] = ("POST",),
        summary: str = "",
    ) -> None:
        """A REST route at /kubin/api/v1/ext/<this extension>/<path>, behind the app's credentials and listed
        at /docs. `make(context)` (a RouteContext) returns the endpoint as FastAPI takes it: its parameters
        and pydantic body model declare the request; a KubinError it raises answers with its message and
        status, as Kubin's own routes do. A `make` that fails leaves the route out and the app running."""
        if not all(part.replace("-", "").replace("_", "").isalnum() for part in path.strip("/").split("/")):
            raise ValueError(
                f"A route path is words of letters, digits, - and _ between slashes (got {path!r})."
            )
        self.routes.append(Route(path.strip("/"), make, tuple(methods), summary))

    def save_settings(self, values: dict[str, Any]) -> None:
        """Write `values` into this extension's section of the user config (and api.settings)."""
        self.settings.update(values)
        if self.saver is not None:
            self.saver(values)
