"""Safe loading of YAML files: study files and trial configurations (``iel train``).

:func:`load_yaml_file` is the one place a YAML file is read.  It refuses, with a message naming the
file and the fix:

- files larger than ``max_bytes`` (checked before reading);
- bytes that are not UTF-8;
- YAML syntax errors (with line and column);
- explicit tags (``!!python/object``, ``!!binary``, ``!!set``, ...): only plain mappings, lists,
  strings, numbers, booleans and null are allowed, so loading never constructs arbitrary objects;
- duplicate keys in a mapping (PyYAML silently keeps the last one: a classic way to lose a factor);
- a document that is not a mapping;
- a document with over :data:`ielcore.fields.MAX_NODES` values once YAML aliases are expanded, or nested
  deeper than :data:`ielcore.fields.MAX_DEPTH` (an "alias bomb" of a few hundred bytes otherwise expands
  to gigabytes when the configuration is copied or hashed).

Timestamps (``2024-01-01``) are kept as strings, so every loaded value is JSON-compatible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from ielcore.errors import SpecError
from ielcore.fields import check_plain

DEFAULT_MAX_BYTES = 1_000_000

_JSON_TAGS = ("null", "bool", "int", "float", "str", "seq", "map")


class _TagNotAllowed(ConstructorError):
    pass


class _DuplicateKey(ConstructorError):
    pass


class StrictSafeLoader(yaml.SafeLoader):
    """A :class:`yaml.SafeLoader` that builds only JSON-like values and rejects duplicate keys."""

    yaml_constructors: dict[Any, Any] = {}

    def construct_undefined(self, node: yaml.Node) -> Any:
        raise _TagNotAllowed(
            None,
            None,
            f"the tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed",
            node.start_mark,
        )

    def construct_timestamp_as_str(self, node: yaml.Node) -> Any:
        return self.construct_scalar(node)  # type: ignore[arg-type]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:  # type: ignore[override]
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # unhashable: SafeConstructor reports it
            if first is not None:
                raise _DuplicateKey(
                    f"while constructing a mapping (first {key!r} on line {first.start_mark.line + 1})",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


for _tag in _JSON_TAGS:
    _full = f"tag:yaml.org,2002:{_tag}"
    StrictSafeLoader.add_constructor(_full, SafeConstructor.yaml_constructors[_full])
StrictSafeLoader.add_constructor("tag:yaml.org,2002:timestamp", StrictSafeLoader.construct_timestamp_as_str)
StrictSafeLoader.add_constructor(None, StrictSafeLoader.construct_undefined)


def _where(e: yaml.MarkedYAMLError) -> str:
    mark = e.problem_mark or e.context_mark
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown position"


def parse_yaml_text(text: str, source: str | None = None) -> Any:
    """Parse YAML text with :class:`StrictSafeLoader`; errors are :class:`SpecError` with ``source``."""
    try:
        return yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except _TagNotAllowed as e:
        raise SpecError(
            f"{e.problem} ({_where(e)}): tags such as !!python/object are not allowed in a YAML file here; "
            "write plain mappings, lists, strings, numbers, booleans and null",
            source=source,
        ) from e
    except _DuplicateKey as e:
        raise SpecError(
            f"{e.problem} ({_where(e)}, {e.context}); each key may appear only once in a mapping: "
            "remove or merge the repeated entry",
            source=source,
        ) from e
    except yaml.MarkedYAMLError as e:
        problem = e.problem or e.context or "syntax error"
        raise SpecError(
            f"invalid YAML at {_where(e)}: {problem}; fix the syntax there (indentation, a missing ':' "
            "or an unclosed bracket or quote)",
            source=source,
        ) from e
    except yaml.YAMLError as e:
        raise SpecError(f"invalid YAML: {e}; fix the syntax", source=source) from e
    except RecursionError as e:
        raise SpecError("the YAML document is nested too deeply; flatten it", source=source) from e


def load_yaml_file(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES, *, what: str = "study file") -> Any:
    """Read a YAML mapping from ``path`` safely (see the module docstring for what is refused).

    ``what`` names the kind of file in messages (``"study file"``, ``"trial configuration"``).
    """
    source = str(path)
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError as e:
        raise SpecError("file not found; check the path", source=source) from e
    except OSError as e:
        raise SpecError(f"cannot read the file ({e.strerror}); check the path", source=source) from e
    if p.is_dir():
        raise SpecError("is a directory, not a file; give the path of a .yaml file", source=source)
    if size > max_bytes:
        raise SpecError(
            f"the file is {size:,} bytes, over the limit of {max_bytes:,} bytes for a {what}; "
            "it lists settings, not data: move large content out of it",
            source=source,
        )
    try:
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise SpecError(f"cannot read the file ({e.strerror}); check its permissions", source=source) from e
    if len(data) > max_bytes:
        raise SpecError(
            f"the file is over the limit of {max_bytes:,} bytes for a {what}; shorten it", source=source
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SpecError(
            f"the file is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}, line {line}); "
            "save it with UTF-8 encoding",
            source=source,
        ) from e
    doc = parse_yaml_text(text, source=source)
    if doc is None:
        raise SpecError(
            f"the file is empty; a {what} is a YAML mapping"
            + (" starting with 'version: 1'" if what == "study file" else " of settings (epochs: 5, ...)"),
            source=source,
        )
    if not isinstance(doc, dict):
        raise SpecError(
            f"the document must be a YAML mapping (key: value lines), but it is a {_kind(doc)}",
            source=source,
        )
    try:
        check_plain(doc)
    except SpecError as e:
        raise e.located(source=source) from None
    return doc


def _kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


__all__ = ["DEFAULT_MAX_BYTES", "StrictSafeLoader", "load_yaml_file", "parse_yaml_text"]
