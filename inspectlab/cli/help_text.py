"""Plain metavars in `--help`: `--input B,C,H,W`, `MODEL`, `--depth N`, and nothing after a flag.

Typer (0.29) labels every parameter by its Python type (`<list[str]>`, `<bool>` on flags, `<str>`) and writes
a required argument as `{model}` in the usage line. `plain_metavars(command)` gives each parameter of a
command the metavar a user reads in a man page, once, when the app's group hands the command out; options
added later get theirs by the same rule, so there is nothing to keep in step per command:

- a flag shows no metavar;
- an option named in METAVARS shows that text; a choice shows its values (`table|json`);
- any other option shows its name in capitals (`--device DEVICE`), an integer `N`, a number `SECONDS` when
  the name says time, else `X`;
- an argument shows its name in capitals (`MODEL`, `MODELS...`), also in the usage line.
"""

from __future__ import annotations

from typing import Any

METAVARS = {
    "--input": "B,C,H,W",
    "--arg": "KEY=VALUE",
    "--output": "FILE",
    "--input-file": "FILE",
    "--weights": "PATH",
    "--columns": "COLUMNS",
    "--layers": "GLOBS",
    "--sizes": "SIZES",
    "--batches": "BATCHES",
    "--budget": "SIZE",
}
_DONE = "_inspectlab_plain_metavars"


def _long_name(param: Any) -> str:
    names = [opt for opt in param.opts if opt.startswith("--")]
    return max(names, key=len) if names else param.opts[0]


def _plain_label(label: str | None, name: str) -> str:
    """Typer's type label (`<table|json>`, `<int range>`, `<float>`, `<list[str]>`) as a plain metavar."""
    if name in METAVARS:
        return METAVARS[name]
    inner = (label or "").strip("<>").removesuffix("...")
    if inner.startswith("list[") and inner.endswith("]"):
        inner = inner[5:-1]
    if "|" in inner:
        return inner
    if inner.startswith("int"):
        return "N"
    if inner.startswith("float"):
        return "SECONDS" if "time" in name else "X"
    return name.lstrip("-").replace("-", "_").upper()


def _plain_type(typer_label: Any, name: str) -> Any:
    return lambda ctx: _plain_label(typer_label(ctx), name)


def _flag(option: Any) -> Any:
    if option is not None:
        option.metavar = ""
    return option


def plain_metavars(command: Any) -> Any:
    """The command, its parameters given plain metavars (done once per command object)."""
    if command is None or getattr(command, _DONE, False):
        return command
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", "") == "argument":
            label = str(param.name).upper()
            many = "..." if param.nargs != 1 else ""
            param.metavar = label + many
            param.display_type_rich = lambda ctx: ""  # the name says it; no `<str>` beside it
            param._usage_display_name = lambda label=label + many, required=param.required: (
                label if required else f"[{label}]")
        elif getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
        elif param.metavar is None:
            param.display_type_rich = _plain_type(param.display_type_rich, _long_name(param))
    typer_help_option = command.get_help_option
    command.get_help_option = lambda ctx: _flag(typer_help_option(ctx))
    setattr(command, _DONE, True)
    return command
