"""Pydantic's validation errors in plain words, each naming its key.

`mistakes(exc, model)` turns every error of a `ValidationError` into a `Mistake`:
its location (`source.refspec`) and a message a person can act on —
`unknown key 'secert_env' (did you mean 'secret_env'?)`, `missing key 'url'`,
`supersede: input should be 'none', 'pending' or 'running'` — rather than
pydantic's "Extra inputs are not permitted". `first_error(exc)` is pydantic's own
first error where its words are kept (the model, manifests, an agent's inputs).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

Location = tuple[int | str, ...]


@dataclass(frozen=True)
class Mistake:
    loc: Location
    message: str  # names the key, e.g. "unknown key 'x' (did you mean 'y'?)"

    @property
    def where(self) -> str:
        """The dotted path of the key (`webhooks.0.secret_env`), '' for the whole input."""
        return dotted(self.loc)


def did_you_mean(word: str, choices: list[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `choices`, or ''."""
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def mistakes(exc: ValidationError, model: type[BaseModel]) -> list[Mistake]:
    """Every error of `exc` (raised validating `model`), in plain words, in order."""
    return [_describe(error, model) for error in exc.errors()]


def first_mistake(exc: ValidationError, model: type[BaseModel]) -> Mistake:
    return _describe(exc.errors()[0], model)


def dotted(loc: Location) -> str:
    """`webhooks.0.secret_env`; '' for the whole input."""
    return ".".join(str(part) for part in loc)


def first_error(
    exc: ValidationError, locate: Callable[[Location], str] = dotted
) -> tuple[str, str]:
    """Pydantic's first error as it words it: where (`locate`d), and its message."""
    first = exc.errors()[0]
    return locate(tuple(first["loc"])), first["msg"]


def first_error_text(exc: ValidationError) -> str:
    """`where: message`, or the message alone when it is about the whole input."""
    where, message = first_error(exc)
    return f"{where}: {message}" if where else message


def _describe(error: ErrorDetails, model: type[BaseModel]) -> Mistake:
    loc = tuple(error["loc"])
    parent, key = loc[:-1], loc[-1] if loc else ""
    inside = f" in {'.'.join(map(str, parent))}" if parent else ""
    kind = error["type"]
    if kind == "extra_forbidden":
        known = [f for f in _fields_at(model, parent) if not f.startswith("_")]
        message = f"unknown key {key!r}{inside}{did_you_mean(str(key), known)}"
    elif kind == "missing":
        message = f"missing key {key!r}{inside}"
    else:
        prefix = f"{'.'.join(map(str, loc))}: " if loc else ""
        message = prefix + _plain(error)
    return Mistake(loc, message)


def _plain(error: ErrorDetails) -> str:
    kind, text = error["type"], error["msg"]
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "expected a mapping of keys"
    if kind == "list_type":
        return "expected a list"
    text = text.removeprefix("Value error, ")
    return text[:1].lower() + text[1:]


def _fields_at(model: type[BaseModel], path: Location) -> list[str]:
    """The keys the (sub)model at `path` takes; [] where that is not a model."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue  # an item of a list: the list's model stays
        field = current.model_fields.get(part)
        current = _model_in(field.annotation) if field is not None else None
        if current is None:
            return []
    return list(current.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model an annotation holds (`Statuses | None`, `list[Subscriber]`), if any."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
