"""YAML loading that remembers line numbers, so validation errors can point at them.

pydantic reports *which field* is wrong (a ``loc`` tuple); the YAML parser knows
*where* each key sits. Joining the two gives errors like
``personas/ada/persona.yaml: stages[1].id (line 14): field required``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from kit.errors import KitError

T = TypeVar("T")


def _loader_with_lines(lines: dict[tuple, int]):
    import yaml

    class LineLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        loader.flatten_mapping(node)
        out = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            out[key] = loader.construct_object(value_node, deep=True)
        return out

    LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)

    def record(node, path: tuple) -> None:
        # Walk the composed node tree once, recording 1-based line numbers per path.
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                p = path + (key_node.value,)
                lines[p] = key_node.start_mark.line + 1
                record(value_node, p)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                p = path + (i,)
                lines[p] = item.start_mark.line + 1
                record(item, p)

    return LineLoader, record


def load_yaml(path: Path, *, what: str = "YAML file") -> tuple[Any, dict[tuple, int]]:
    """Parse ``path`` safely; return (data, {field path: line}). Errors are one line."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise KitError(f"{what} not found", where=path, fix="check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise KitError("not UTF-8 text", where=path, fix="save the file as UTF-8") from None
    lines: dict[tuple, int] = {}
    loader_cls, record = _loader_with_lines(lines)
    try:
        loader = loader_cls(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                record(node, ())
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise KitError(f"malformed YAML{line}: {problem}", where=path,
                       fix="fix the YAML syntax (indentation, quotes, colons)") from None
    return data, lines


def format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<top level>"


def validate(model: type[T], data: Any, *, path: Path, lines: dict[tuple, int] | None = None,
             context: dict | None = None) -> T:
    """Validate ``data`` into ``model``; turn the first pydantic error into a KitError."""
    from pydantic import ValidationError

    if data is None:
        raise KitError("the file is empty", where=path, fix="fill it in (see `perskit init`)")
    if not isinstance(data, dict):
        raise KitError("expected a mapping of fields at the top level", where=path,
                       fix="write `key: value` pairs, not a list or a scalar")
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise validation_error(exc, path=path, lines=lines or {}, data=data) from None


def _user_loc(loc: tuple, data: Any) -> tuple:
    """pydantic's error path, less the parts the user never wrote.

    A tagged union inserts its tag value (``train.trl.max_steps``) and validators add
    ``function-...`` parts; keep only the keys and indexes that exist in the YAML data.
    """
    out, node = [], data
    for part in loc:
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(part, str) and (part.startswith("function-") or
                                        (isinstance(node, dict) and part in node.values())):
            continue  # validator wrapper or union tag: not something the user wrote
        else:
            out.append(part)  # a missing or unknown key: name it
            node = None
    return tuple(out)


def validation_error(exc, *, path: Path, lines: dict[tuple, int], data: Any = None) -> KitError:
    err = exc.errors()[0]
    loc = _user_loc(tuple(err["loc"]), data)
    line = None
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            line = lines[loc[:n]]
            break
    field = format_loc(loc)
    where = f"{path}: {field}" + (f" (line {line})" if line else "")
    msg = err["msg"]
    etype = err.get("type", "")
    if etype == "extra_forbidden":
        fix = f"remove or rename '{loc[-1]}' (unknown key; check spelling against the docs)"
        msg = "unknown key"
    elif etype == "missing":
        fix = f"add the required field '{loc[-1]}'"
    else:
        fix = "correct this value"
    more = len(exc.errors()) - 1
    if more:
        msg += f" (+{more} more problem{'s' if more > 1 else ''})"
    return KitError(msg, where=where, fix=fix)
