"""The package's shape, read from the source with ``ast`` (no imports, no I/O): imports point
down the layers, and no module grows past ``MAX_LINES`` without saying why.

The layers, top to bottom (a module may import its own layer and any layer below it, never one
above, never a sibling on its own row)::

    cli                      commands; the only importer of the lab and the bench
    server                   the ASGI app and its lifespan
    runtime                  the composition root: builds database, stores, pool, engine
    api                      HTTP only
    engine                   planning, dispatch, retries, limits
    realtime                 the socket.io gateway (the engine delivers through it)
    config                   settings: each provider's section is the Struct its module owns
    providers | store        talk to provider services | to the database
    metrics                  the metrics every layer above may count on
    domain                   pure rules: imports nothing else of pushgate

``lab`` and ``bench`` are programs of their own that reach a gateway over the
network, so they import nothing of pushgate outside their own package. ``pushgate/__init__.py``
(the version) may be imported from anywhere and imports nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pushgate

PACKAGE = Path(pushgate.__file__).parent

LAYERS: list[tuple[str, ...]] = [
    ("cli",),
    ("server",),
    ("runtime",),
    ("api",),
    ("engine",),
    ("realtime",),
    ("config",),
    ("providers", "store"),
    ("metrics",),
    ("domain",),
]
#: Separate programs: they import only themselves, and only ``SEPARATE_IMPORTERS`` import them.
SEPARATE = ("lab", "bench")
SEPARATE_IMPORTERS = ("cli",)
ROOT = "__init__"

MAX_LINES = 450
#: A module over ``MAX_LINES`` says why in its docstring's first lines, on a line starting so.
LONG_MARKER = "Long because:"


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module under pushgate/."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(["pushgate", *parts])] = path
    return found


MODULES = _modules()


def _layer(module: str) -> str:
    """The layer of a dotted module name: its first name under ``pushgate``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _imports(module: str, path: Path) -> set[str]:
    """Every pushgate module ``module`` imports, wherever the import statement is (function
    bodies and ``TYPE_CHECKING`` blocks included: they are dependencies all the same)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from pushgate import config`` imports the module pushgate.config.
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {name for name in found if name == "pushgate" or name.startswith("pushgate.")}


def _rank(layer: str) -> int:
    for i, row in enumerate(LAYERS):
        if layer in row:
            return i
    raise AssertionError(f"pushgate.{layer} is in no layer: add it to LAYERS (or SEPARATE) in {__file__}")


def _problem(module: str, target: str) -> str | None:
    """Why ``module`` may not import ``target``, or None when it may."""
    src, dst = _layer(module), _layer(target)
    if src == dst or dst == ROOT:
        return None
    if src == ROOT:
        return "the package root imports nothing"
    if src in SEPARATE:
        return f"{src} is a separate program: it reaches pushgate over the network"
    if dst in SEPARATE:
        return None if src in SEPARATE_IMPORTERS else f"only {SEPARATE_IMPORTERS} may import {dst}"
    if _rank(dst) < _rank(src):
        return f"{dst} is above {src}"
    if _rank(dst) == _rank(src):
        return f"{dst} and {src} are siblings"
    return None


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        layer = _layer(module)
        if layer not in (ROOT, *SEPARATE):
            _rank(layer)


def test_imports_point_down() -> None:
    wrong = sorted(
        f"{module} imports {target}: {why}"
        for module, path in MODULES.items()
        for target in _imports(module, path)
        if (why := _problem(module, target)) is not None
    )
    assert not wrong, "\n".join(wrong)


def test_the_rules_catch_upward_imports() -> None:
    """The checker itself: each kind of wrong edge is reported, each allowed one is not."""
    assert _problem("pushgate.store.devices", "pushgate.api.schemas")
    assert _problem("pushgate.domain.render", "pushgate.config")
    assert _problem("pushgate.providers.fcm", "pushgate.store.db")
    assert _problem("pushgate.engine.worker", "pushgate.runtime")
    assert _problem("pushgate.lab.fcm", "pushgate.domain.render")
    assert _problem("pushgate.server", "pushgate.lab.main")
    assert _problem("pushgate.api.devices", "pushgate.engine.worker") is None
    assert _problem("pushgate.store.credentials", "pushgate.config")  # settings sit above the store
    assert _problem("pushgate.config", "pushgate.providers.registry") is None
    assert _problem("pushgate.cli.tools", "pushgate.lab.main") is None
    assert _problem("pushgate.server", "pushgate") is None


def _long_because(path: Path) -> bool:
    doc = ast.get_docstring(ast.parse(path.read_text(), str(path))) or ""
    return any(line.strip().startswith(LONG_MARKER) for line in doc.splitlines()[:6])


def _too_long() -> set[str]:
    """Modules over ``MAX_LINES`` that do not say why, by path under pushgate/."""
    return {
        path.relative_to(PACKAGE).as_posix()
        for path in MODULES.values()
        if len(path.read_text().splitlines()) > MAX_LINES and not _long_because(path)
    }


def test_no_module_is_long_without_a_reason() -> None:
    over = sorted(_too_long())
    assert not over, (
        f"over {MAX_LINES} lines: {over}; split by job, or start a line of the module "
        f"docstring's first lines with {LONG_MARKER!r} and say why"
    )
