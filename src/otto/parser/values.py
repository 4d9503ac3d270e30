"""The regular expressions of a value: a string, `it`, `it.AXIS`, `concat(…)` of those.

The grammar makes one terminal of them (see `grammar`), so no reduction state is
shared between the places a value stands (which would let the contextual lexer
mistake a step name for a variable's name after it); `build` takes a `concat(…)`
apart again with the same expressions.
"""

from __future__ import annotations

STRING = r"'[^']*+(?:''[^']*+)*+'"
# Not `it` followed on its line by a string or `name:`: that is a step named `it` and its
# first argument (as the renderer writes it; a value `it` is followed by `,`, `{`, `)` or
# a line end there).
_STEP_ARGUMENT = r"[ \t]*(?:'|[A-Za-z][A-Za-z0-9_]*[ \t\f\v\n]*:)"
IT = rf"it(?:\.[A-Za-z_][A-Za-z0-9_]*)?(?![A-Za-z0-9_.])(?!{_STEP_ARGUMENT})"
_SPACE = r"[ \t\f\v\n]*"
_PART = f"(?:{STRING}|{IT})"
CONCAT = rf"concat{_SPACE}\({_SPACE}{_PART}(?:{_SPACE},{_SPACE}{_PART})*{_SPACE},?{_SPACE}\)"
