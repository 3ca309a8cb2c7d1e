"""YAML loading that remembers line numbers, so validation errors can point at them.

pydantic reports *which field* is wrong (a ``loc`` tuple); the YAML parser knows
*where* each key sits. Joining the two gives errors like
``personas/ada/persona.yaml: stages[1].id (line 14): field required``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from kit.errors import KitError, raise_all

T = TypeVar("T")

# Specs are hand-written text of a few KB (the largest bundled persona is 27 KB). Files get
# shared, so they are untrusted: a size cap bounds parse time and memory (the pure-Python
# parser holds ~200 bytes of node per byte of dense YAML: a 256 KiB list of short items
# peaks near 60 MiB and parses in about a second), and an alias-expansion cap stops a
# "billion laughs" file (nine aliases nested eight deep expand 9^8-fold in under 1 KB)
# before anything walks the expanded tree.
MAX_SPEC_BYTES = 256 << 10
MAX_ALIAS_EXPANSION = 10_000  # nodes that aliases add beyond the file's own nodes
MAX_DEPTH = 100


def _loader_class():
    import yaml

    class SpecLoader(yaml.SafeLoader):
        """SafeLoader that keeps dates as text (no spec field is a date, and a bad one
        such as 2001-13-45 would otherwise fail deep inside the parser) and rejects
        unhashable keys with a YAML error instead of a TypeError."""

    SpecLoader.yaml_implicit_resolvers = {
        ch: [(tag, rx) for tag, rx in rs if tag != "tag:yaml.org,2002:timestamp"]
        for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def construct_mapping(loader, node, deep=False):
        loader.flatten_mapping(node)
        out = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value, not a list or mapping",
                    key_node.start_mark) from None
            out[key] = loader.construct_object(value_node, deep=True)
        return out

    SpecLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return SpecLoader


def _children(node) -> list:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def check_expansion(root, path: Path) -> None:
    """Refuse recursive aliases and files whose aliases expand past MAX_ALIAS_EXPANSION.

    An alias is the *same* node object as its anchor, so the expanded size of each node is
    memoised by id: the walk costs the file's own node count, never the expansion.
    """
    fix = "write the values out instead of using YAML anchors (&) and aliases (*)"
    size: dict[int, int] = {}
    state: dict[int, int] = {}  # 1 = being expanded (a cycle if seen again), 2 = done
    stack: list[tuple[object, int]] = [(root, 0)]
    while stack:  # iterative post-order walk: a deeply nested file cannot overflow the stack
        node, depth = stack.pop()
        key = id(node)
        if depth > MAX_DEPTH:
            raise KitError(f"nested more than {MAX_DEPTH} levels deep", where=path,
                           fix="flatten the structure; specs need only a few levels")
        if state.get(key) == 2:
            continue
        if state.get(key) == 1:  # second visit: every child is done
            size[key] = 1 + sum(size[id(k)] for k in _children(node))
            state[key] = 2
            continue
        state[key] = 1
        stack.append((node, depth))
        for kid in _children(node):
            if state.get(id(kid)) == 1:  # state-1 nodes are exactly the ancestors
                raise KitError("a YAML alias refers to itself (recursive anchor)", where=path, fix=fix)
            if state.get(id(kid)) != 2:
                stack.append((kid, depth + 1))
    added = size[id(root)] - len(size)
    if added > MAX_ALIAS_EXPANSION:
        raise KitError(f"YAML aliases expand to {size[id(root)]:,} values (limit: {MAX_ALIAS_EXPANSION:,} "
                       "added by aliases); refusing a possible alias bomb", where=path, fix=fix)


def record_lines(root) -> dict[tuple, int]:
    """1-based line of every key and list item, by field path, without expanding aliases.

    A node reached a second time is an alias: its fields keep the lines of the place it
    was defined, and errors inside it point at the alias's own key (the nearest prefix).
    """
    import yaml

    lines: dict[tuple, int] = {}
    seen: set[int] = set()
    stack = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            items = [((*path, k.value if isinstance(k, yaml.ScalarNode) else "<complex key>"), k, v)
                     for k, v in node.value]
        elif isinstance(node, yaml.SequenceNode):
            items = [((*path, i), v, v) for i, v in enumerate(node.value)]
        else:
            continue
        for p, mark_node, child in items:
            lines.setdefault(p, mark_node.start_mark.line + 1)
            stack.append((child, p))
    return lines


def read_spec_text(path: Path, *, what: str, limit: int = MAX_SPEC_BYTES) -> str:
    """The UTF-8 text of a spec file, refusing missing, oversized and non-text files."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"{what} not found", where=path, fix="check the path")
    size = path.stat().st_size
    if size > limit:
        raise KitError(f"{what} is {size:,} bytes, over the {limit:,}-byte limit for a spec", where=path,
                       fix="keep specs small; put long material in source files, not in the spec")
    try:
        return path.read_bytes()[:limit].decode("utf-8")
    except UnicodeDecodeError:
        raise KitError("not UTF-8 text", where=path, fix="save the file as UTF-8") from None


def load_yaml(path: Path, *, what: str = "YAML file") -> tuple[Any, dict[tuple, int]]:
    """Parse ``path`` safely and boundedly; return (data, {field path: line}). Errors are one line."""
    import yaml

    path = Path(path)
    text = read_spec_text(path, what=what)
    try:
        loader = _loader_class()(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, {}
            check_expansion(node, path)
            lines = record_lines(node)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise KitError(f"malformed YAML{line}: {problem}", where=path,
                       fix="fix the YAML syntax (indentation, quotes, colons)") from None
    except RecursionError:  # the composer recurses per nesting level
        raise KitError("nested too deeply to read", where=path,
                       fix="flatten the structure; specs need only a few levels") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise KitError(f"a value cannot be read ({str(exc).splitlines()[0][:120]})", where=path,
                       fix="shorten or quote the value") from None
    return data, lines


def override_value(raw: str) -> Any:
    """A ``--set`` value, parsed as YAML with the same alias bounds as a spec file; text
    that is not YAML stays text (``--set name=a:b``)."""
    import yaml

    if not raw.strip():
        return ""
    loader = _loader_class()(raw)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_expansion(node, Path("--set"))
        return loader.construct_document(node)
    except (yaml.YAMLError, ValueError, RecursionError):
        return raw
    finally:
        loader.dispose()


def format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:  # a key quoted from the file: keep a huge one from flooding the line
            text = str(part)
            out += ("." if out else "") + (text if len(text) <= 60 else text[:57] + "...")
    return out or "<top level>"


def collect(model: type[T], data: Any, *, path: Path, lines: dict[tuple, int] | None = None,
            context: dict | None = None) -> tuple[T | None, list[KitError]]:
    """Validate ``data`` into ``model``: (the object, []) or (None, one KitError per problem)."""
    from pydantic import ValidationError

    if data is None:
        raise KitError("the file is empty", where=path, fix="fill it in (see `perskit init`)")
    if not isinstance(data, dict):
        raise KitError("expected a mapping of fields at the top level", where=path,
                       fix="write `key: value` pairs, not a list or a scalar")
    try:
        return model.model_validate(data, context=context), []
    except ValidationError as exc:
        return None, validation_errors(exc, path=path, lines=lines or {}, data=data)


def validate(model: type[T], data: Any, *, path: Path, lines: dict[tuple, int] | None = None,
             context: dict | None = None) -> T:
    """Validate ``data`` into ``model``; every problem becomes one line of a KitError."""
    obj, problems = collect(model, data, path=path, lines=lines, context=context)
    raise_all(problems)
    return obj


_GONE = object()  # below a key the user did not write: nothing more to match


def _user_loc(loc: tuple, data: Any) -> tuple:
    """pydantic's error path, less the parts the user never wrote.

    A tagged union inserts its tag value (``train.trl.max_steps``), a plain union the
    member type (``big_five.O.float``), and validators add ``function-...`` parts; keep
    only the keys and indexes that exist in the YAML data.
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
                                        (isinstance(node, dict) and part in node.values()) or
                                        (node is not _GONE and not isinstance(node, (dict, list)))):
            continue  # validator wrapper, union tag or union member: not something the user wrote
        else:
            out.append(part)  # a missing or unknown key: name it
            node = _GONE
    return tuple(out)


def line_of(loc: tuple, lines: dict[tuple, int]) -> int | None:
    """The line of ``loc``, or of its nearest written parent."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def problem_at(path: Path, loc: tuple, lines: dict[tuple, int], msg: str, fix: str) -> KitError:
    """One problem as a KitError: ``<file>: <field> (line N): <msg> (fix: ...)``."""
    line = line_of(loc, lines)
    where = f"{path}: {format_loc(loc)}" + (f" (line {line})" if line else "")
    return KitError(msg, where=where, fix=fix)


MAX_PROBLEMS = 50  # a wholly wrong file still gives a readable list, not thousands of lines


def validation_errors(exc, *, path: Path, lines: dict[tuple, int], data: Any = None) -> list[KitError]:
    """Every pydantic error, one KitError per field (a union's alternatives share one line)."""
    import difflib

    by_loc: dict[tuple, list[dict]] = {}
    for err in exc.errors():
        by_loc.setdefault(_user_loc(tuple(err["loc"]), data), []).append(err)
    missing = {loc[:-1]: [] for loc, errs in by_loc.items() if errs[0].get("type") == "missing"}
    for loc, errs in by_loc.items():
        if errs[0].get("type") == "missing":
            missing[loc[:-1]].append(str(loc[-1]))
    problems = []
    for loc, errs in sorted(by_loc.items(), key=lambda item: line_of(item[0], lines) or 0):
        etype = errs[0].get("type", "")
        msg = "; or ".join(dict.fromkeys(str(e["msg"]) for e in errs))
        name = format_loc(loc[-1:]) if loc else ""
        if etype == "extra_forbidden":
            msg = "unknown key"
            near = difflib.get_close_matches(str(loc[-1]), missing.get(loc[:-1], []), n=1)
            fix = (f"rename '{name}' to '{near[0]}'" if near else
                   f"remove or rename '{name}' (unknown key; check spelling against the docs)")
        elif etype == "missing":
            fix = f"add the required field '{name}'"
        else:
            fix = "correct this value"
        problems.append(problem_at(path, loc, lines, msg, fix))
    if len(problems) > MAX_PROBLEMS:
        rest = len(problems) - MAX_PROBLEMS
        problems = problems[:MAX_PROBLEMS] + [KitError(f"{rest} more problem{'s' * (rest > 1)} not shown",
                                                       where=path, fix="fix the ones above and validate again")]
    return problems


def load_json_spec(raw: bytes, *, where: str | Path, what: str = "JSON", limit: int = MAX_SPEC_BYTES) -> Any:
    """Parse shared JSON (a character card) boundedly: size cap, UTF-8, nesting depth."""
    import json

    if len(raw) > limit:
        raise KitError(f"{what} is {len(raw):,} bytes, over the {limit:,}-byte limit", where=where,
                       fix="use a smaller file")
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise KitError(f"{what} is not valid UTF-8 JSON ({type(exc).__name__})", where=where,
                       fix="re-export it, or replace it with a valid file") from None
