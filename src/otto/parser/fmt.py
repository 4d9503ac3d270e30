"""`format_ottofile()`: what `otto fmt` writes, the canonical style with every comment kept.

The canonical text is `render()` of the parsed model, and the model holds no
comments, so they are put back by position. The source (comments blanked) and
the canonical text are each parsed into a full syntax tree and walked alongside
the model, which names every token that matters by the node it stands for (a
step, an argument, a property, a closing brace, …): an anchor, found in both.

A comment with code before it on its line trails the nearest anchor before it in
the source, and is written right after that anchor's piece of the canonical text
(a `//` one, or one spanning lines, ends the line there; whatever followed on that
line continues on the next, one indent deeper). Any other comment leads the
nearest anchor after it, on a line of its own just before that anchor's piece, at
its indentation (one indent deeper before a closing brace: it ends a block's
content; or in the middle of a line) — unless code the canonical text writes with
the piece before stands between them (`pipeline /* here */ {`): then it follows
that piece, on a line of its own. Comments after the last `}` end the file. So
comments keep their order wherever the file's parts were in the canonical order,
and formatting twice gives what formatting once did.

An `each` block stays as written (its stage is anchored by the matrix's template
context, not the expansion), and so does a `use` block.

The result is checked before it is returned: it must parse to the same model and
hold the same comments. If it does not, a ParseError at the first comment that
was not kept says so, and nothing should be written.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from lark import Lark, Token, Tree

from otto.model import Context, HookOn, Pipeline
from otto.parser.build import (
    BLOCK_KEY,
    CACHE_RESTORE,
    CACHE_SAVE,
    CONTAINER_PROPERTIES,
    RUNTIME_PROPERTIES,
    Syntax,
    hooks_by_stage,
)
from otto.parser.errors import ParseError, error_at
from otto.parser.grammar import GRAMMAR
from otto.parser.parsing import parse_syntax
from otto.parser.render import INDENT, render
from otto.parser.source import comment_spans, decode, strip_comments

Key = tuple[str | int, ...]  # the model node a token stands for
Anchors = dict[Key, int]  # key → the token's offset


@dataclass
class _Comment:
    start: int
    end: int
    text: str
    trailing: bool  # code stands before it on its line

    @property
    def ends_line(self) -> bool:
        return self.text.startswith("//")


@dataclass
class _Piece:
    """The canonical text from one anchor to the next, with the comments placed at it."""

    text: str
    key: Key
    new_line: bool  # the piece starts a line of the canonical text
    indent: str  # the indentation of its line
    before: list[_Comment] = field(default_factory=list)
    after: list[_Comment] = field(default_factory=list)


def format_ottofile(text: str | bytes, filename: str = "<string>") -> str:
    """`text` in the canonical style with its comments in place; ParseError if it is
    invalid, or (never expected) if a comment could not be kept."""
    source = decode(text, filename)
    pipeline, _, syntax = parse_syntax(source, filename)
    canonical = render(pipeline, syntax)
    spans = comment_spans(source, filename)
    if not spans:
        return canonical
    blanked = strip_comments(source, filename)
    comments = [_comment(source, blanked, start, end) for start, end in spans]
    pieces = _pieces(canonical, _anchors(_tree(canonical), pipeline, syntax))
    at_end = _place(comments, pieces, _anchors(_tree(blanked), pipeline, syntax), blanked)
    formatted = _layout(pieces, at_end)
    _check(formatted, canonical, comments, source, filename)
    return formatted


@cache
def _tree_parser() -> Lark:
    # Built on first use: only the formatter needs every token, braces and commas too.
    return Lark(GRAMMAR, parser="lalr", lexer="contextual", keep_all_tokens=True)


def _tree(text: str) -> Tree[Token]:
    return _tree_parser().parse(text)


def _comment(source: str, blanked: str, start: int, end: int) -> _Comment:
    line_start = blanked.rfind("\n", 0, start) + 1
    text = source[start:end]
    if text.startswith("//"):
        text = text.rstrip()
    return _Comment(start, end, text, trailing=bool(blanked[line_start:start].strip()))


# -- anchors: the tokens of a syntax tree, named by the model nodes they stand for --------


def _at(token: Any) -> int:
    """Where a token starts; a subtree (a `['a', 'b']` list) starts at its first token."""
    if isinstance(token, Tree):
        token = next(token.scan_values(lambda v: isinstance(v, Token)), None)
    return (token.start_pos or 0) if token is not None else 0


def _is_value(child: Any) -> bool:
    """A value token: a string, `it` or `concat(…)`."""
    return isinstance(child, Token) and child.type in ("STR", "VALUE")


def _subtrees(tree: Tree[Token]) -> list[Tree[Token]]:
    return [child for child in tree.children if isinstance(child, Tree)]


def _anchors(tree: Tree[Token], pipeline: Pipeline, syntax: Syntax) -> Anchors:
    found: Anchors = {}
    items = _subtrees(tree)
    if items and items[0].data == "use":
        _open_close(items.pop(0), ("use",), found)
    found[("pipeline",)] = _at(next(c for c in tree.children if isinstance(c, Token)))
    found[("pipeline", "}")] = _at(tree.children[-1])
    hooks = hooks_by_stage(pipeline)
    for item in items:
        if item.data == "notify":  # the pipeline's
            _hook(item, "pipeline", hooks.get(None, []), found)
    items = [item for item in items if item.data != "notify"]
    batches = [batch for batch in pipeline.batches if not batch.hooks]
    for b, (item, batch) in enumerate(zip(items, batches, strict=True)):
        if item.data == "each":
            matrix = syntax.matrices[b]
            _open_close(item, ("batch", b), found)
            _stage(_subtrees(item)[-1], matrix.template, matrix.hooks, found)
        elif item.data == "steps":
            _steps(item, batch.contexts[0], found)
        elif item.data == "stage":
            _stage(item, batch.contexts[0], hooks.get(batch.contexts[0].uuid, []), found)
        else:  # parallel, fanout
            _open_close(item, ("batch", b), found)
            stages = [child for child in _subtrees(item) if child.data == "stage"]
            for child in _subtrees(item):
                if child.data in GATE_RULES:
                    _gate(child, ("batch", b), found)
            for stage, context in zip(stages, batch.contexts, strict=True):
                _stage(stage, context, hooks.get(context.uuid, []), found)
    return found


GATE_RULES = ("when", "gates")


def _gate(tree: Tree[Token], owner: Key, found: Anchors) -> None:
    """`when { … }` or `gates { enter { … } exit { … } }`: their keywords, braces, inputs
    and timeouts (an expression is one piece with its block)."""
    # One key for `when` and `gates`: either writes the gate, whichever the canonical
    # text uses, so comments at one stay at the other.
    _open_close(tree, ("gate", *owner), found)
    for side in _subtrees(tree):
        if side.data not in ("enter", "exit"):
            continue
        _open_close(side, (side.data, *owner), found)
        for item in _subtrees(side):
            if item.data in ("input", "gate_timeout"):
                found[(item.data, side.data, *owner)] = _at(item.children[0])


def _open_close(tree: Tree[Token], key: Key, found: Anchors) -> None:
    found[key] = _at(tree.children[0])
    found[(*key, "}")] = _at(tree.children[-1])


def _stage(tree: Tree[Token], context: Context, hooks: list[Context], found: Anchors) -> None:
    uuid = context.uuid
    _open_close(tree, ("stage", uuid), found)
    _settings(tree.children, ("property", uuid), {}, found)
    for child in _subtrees(tree):
        if child.data == "names":  # `credentials = […]`: a property's value
            continue
        if child.data in GATE_RULES:
            _gate(child, (uuid,), found)
        elif child.data == "environment":
            _open_close(child, ("environment", uuid), found)
            _settings(child.children, ("variable", uuid), {}, found)
        elif child.data == "cache":
            _cache(child, uuid, found)
        elif child.data in ("rollback", "notify"):
            _hook(child, uuid, hooks, found)
        elif child.data == "runtime":
            _settings(child.children, ("property", uuid), RUNTIME_PROPERTIES, found)
            for docker in _subtrees(child):
                _settings(docker.children, ("property", uuid), CONTAINER_PROPERTIES, found)
        else:
            _steps(child, context, found)


def _hook(tree: Tree[Token], owner: str, hooks: list[Context], found: Anchors) -> None:
    """`rollback { steps }` or `notify { OUTCOME { steps } … }`: its braces, each
    outcome's, and the steps of the hook context each stands for."""
    by_outcome = {hook.hook.on: hook for hook in hooks if hook.hook is not None}
    _open_close(tree, (tree.data, owner), found)
    if tree.data == "rollback":
        _steps(_subtrees(tree)[0], by_outcome[HookOn.ROLLBACK], found)
        return
    for outcome in _subtrees(tree):
        hook = by_outcome[HookOn(outcome.children[0].value)]
        _open_close(outcome, ("outcome", hook.uuid), found)
        _steps(_subtrees(outcome)[0], hook, found)


def _cache(tree: Tree[Token], uuid: str, found: Anchors) -> None:
    """`cache { use NAME  NAME = […] }`: each name, by what it says."""
    _open_close(tree, ("cache", uuid), found)
    _settings(tree.children, ("cache", uuid), {}, found)
    for i, child in enumerate(tree.children):
        if isinstance(child, Token) and child.type == "USE":
            found[("cache", uuid, "use", tree.children[i + 1].value)] = _at(child)


def _settings(children: Sequence[Any], key: Key, names: dict[str, str], found: Anchors) -> None:
    """`NAME = 'value'` pairs among `children`, by the model name each one sets."""
    for i, child in enumerate(children):
        if isinstance(child, Token) and child.type == "EQUAL":
            name = names.get(children[i - 1].value, children[i - 1].value)
            found[(*key, name)] = _at(children[i - 1])
            found[(*key, name, "=")] = _at(children[i + 1])


def _steps(tree: Tree[Token], context: Context, found: Anchors) -> None:
    _open_close(tree, ("steps", context.uuid), found)
    written = [s for s in context.steps if s.symbol not in (CACHE_RESTORE, CACHE_SAVE)]
    for child, step in zip(_subtrees(tree), written, strict=True):
        _step(child, step.uuid, step.parameters, found)


def _step(tree: Tree[Token], uuid: str, parameters: Any, found: Anchors) -> None:
    children = tree.children
    found[("step", uuid)] = _at(children[0])
    position = 0
    keyword: str | None = None
    for child in children[1:]:
        if isinstance(child, Token) and child.type == "KEY":
            keyword = child.value
            found[("argument", uuid, keyword)] = _at(child)
        elif _is_value(child) and keyword is None:
            found[("argument", uuid, position)] = _at(child)
            position += 1
        elif _is_value(child):
            found[("argument", uuid, keyword, ":")] = _at(child)
            keyword = None
    inner = _subtrees(tree)
    if inner:
        found[("step", uuid, "}")] = _at(children[-1])
        block = parameters[-1] if isinstance(parameters, list) else parameters[BLOCK_KEY]
        for child, raw in zip(inner, block, strict=True):
            _step(child, raw["uuid"], raw["parameters"], found)


# -- placing the comments and laying the text out ------------------------------------------


def _pieces(canonical: str, anchors: Anchors) -> list[_Piece]:
    order = sorted(anchors.items(), key=lambda item: item[1])
    pieces: list[_Piece] = []
    indent = ""
    for i, (key, start) in enumerate(order):
        end = order[i + 1][1] if i + 1 < len(order) else len(canonical)
        before = canonical[canonical.rfind("\n", 0, start) + 1 : start]
        new_line = not before.strip()
        if new_line:
            indent = before
        pieces.append(_Piece(canonical[start:end].rstrip(), key, new_line, indent))
    return pieces


def _place(
    comments: list[_Comment], pieces: list[_Piece], source: Anchors, blanked: str
) -> list[_Comment]:
    """Attach each comment to a piece by where its anchor stood in the source; return
    the comments left for the end of the file."""
    located = sorted((source[p.key], p) for p in pieces if p.key in source)
    offsets = [offset for offset, _ in located]
    at_end: list[_Comment] = []
    for comment in comments:
        after = bisect_left(offsets, comment.start)
        following = offsets[after] if after < len(offsets) else len(blanked)
        # Code between the comment and the next anchor (a '{' of the piece before, say)
        # is written with the piece before: so is the comment, to stay in front of it.
        if after and (comment.trailing or blanked[comment.end : following].strip()):
            located[after - 1][1].after.append(comment)
        elif after < len(located):
            located[after][1].before.append(comment)
        else:
            at_end.append(comment)
    return at_end


def _layout(pieces: list[_Piece], at_end: list[_Comment]) -> str:
    out: list[str] = []
    line_open = False
    indent = ""
    for i, piece in enumerate(pieces):
        if piece.new_line:
            if line_open:
                out.append("\n")
                line_open = False
            indent = piece.indent
        for comment in piece.before:
            if line_open:
                out.append("\n")
                line_open = False
            out.append(f"{_comment_indent(piece, indent)}{comment.text}\n")
        if line_open:
            out.append(f" {piece.text}")
        else:
            out.append(f"{indent}{'' if piece.new_line else INDENT}{piece.text}")
        line_open = True
        for comment in piece.after:
            if line_open and comment.trailing:
                out.append(f" {comment.text}")
                # After a `//` comment the line ends; after a multi-line one, no code
                # would stand before what followed on its last line: end it too.
                line_open = not (comment.ends_line or "\n" in comment.text)
                out.append("" if line_open else "\n")
                continue
            if line_open:
                out.append("\n")
                line_open = False
            following = pieces[i + 1] if i + 1 < len(pieces) else None
            where = _comment_indent(following, indent) if following else ""
            out.append(f"{where}{comment.text}\n")
    if line_open:
        out.append("\n")
    out.extend(f"{comment.text}\n" for comment in at_end)
    return "".join(out)


def _comment_indent(piece: _Piece, indent: str) -> str:
    """Where a comment on a line of its own before `piece` starts: at the piece's line,
    one indent deeper before a closing brace or in the middle of a line."""
    if not piece.new_line:
        return indent + INDENT
    return piece.indent + (INDENT if piece.text == "}" else "")


def _check(
    formatted: str, canonical: str, comments: list[_Comment], source: str, filename: str
) -> None:
    try:
        same_model = render(*_model(formatted, filename)) == canonical
        kept = Counter(_comment_texts(formatted, filename))
    except ParseError:
        same_model, kept = False, Counter()
    lost: list[_Comment] = []
    for comment in comments:
        if kept[comment.text] > 0:
            kept[comment.text] -= 1
        else:
            lost.append(comment)
    if same_model and not lost and not +kept:
        return
    where = (lost or comments)[0]
    raise error_at(
        source,
        filename,
        where.start,
        "cannot keep this comment in place in the canonical style; nothing was rewritten",
    )


def _model(text: str, filename: str) -> tuple[Pipeline, Syntax]:
    pipeline, _, syntax = parse_syntax(text, filename)
    return pipeline, syntax


def _comment_texts(text: str, filename: str) -> list[str]:
    texts = [text[start:end] for start, end in comment_spans(text, filename)]
    return [t.rstrip() if t.startswith("//") else t for t in texts]
