"""The channels YAML file: read with the line of every error, written back in the same form."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from memory_layer.channels.schemas import ChannelFields, ChannelsDocument
from memory_layer.models.channel import Channel


class DocumentError(ValueError):
    """The file does not hold a valid channels document; each problem names its line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _node_at(root: yaml.Node | None, location: tuple[int | str, ...]) -> yaml.Node | None:
    """The deepest node of the composed document on the way to `location` (a pydantic error's
    loc): its mark is the line to name."""
    node = root
    for part in location:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    # An unknown field is named by its key, anything else by its value.
                    node = value
                    break
            else:
                return node
        else:
            return node
    return node


def _key_node(root: yaml.Node | None, location: tuple[int | str, ...]) -> yaml.Node | None:
    parent = _node_at(root, location[:-1])
    if isinstance(parent, yaml.MappingNode):
        for key, _ in parent.value:
            if key.value == location[-1]:
                found: yaml.Node = key
                return found
    return parent


def load(text: str, source: str = "<channels>") -> dict[str, ChannelFields]:
    """The channels a YAML document declares, by name; DocumentError naming the field and the
    line of every problem (unknown fields, wrong types, bad names, values out of range)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}" if mark is not None else "?"
        raise DocumentError([f"{source}:{line}: not valid YAML ({exc})"]) from exc
    if data is None:
        data = {}
    try:
        document = ChannelsDocument.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location = tuple(error["loc"])
            # `channels.<name>` with a bad name: pydantic puts `[key]` after it.
            bad_key = "[key]" in location
            location = tuple(part for part in location if part != "[key]")
            unknown = error["type"] == "extra_forbidden"
            node = (
                _key_node(root, location) if unknown or bad_key else _node_at(root, location)
            )
            line_number = node.start_mark.line + 1 if node is not None else 1
            field = ".".join(str(part) for part in location) or "(document)"
            message = "unknown field" if unknown else error["msg"]
            problems.append(f"{source}:{line_number}: {field}: {message}")
        raise DocumentError(problems) from exc
    return dict(document.channels)


def dump(channels: list[Channel]) -> str:
    """A tenant's channels as the YAML `load` reads (only the fields that differ from the
    defaults)."""
    document: dict[str, Any] = {
        "channels": {
            channel.name: ChannelFields.model_validate(channel).model_dump(
                mode="json", exclude_defaults=True
            )
            for channel in channels
        }
    }
    return yaml.safe_dump(document, sort_keys=False)
