"""The Ottofile grammar (lark, LALR, contextual lexer) and the one parser built from it.

Keywords are terminals with a word-boundary look-ahead and a higher priority
than names; the contextual lexer only offers the terminals the parser can take
in its current state, so keywords stay usable as names where no keyword fits
(a step called `stage`, a property called `steps` or `environment`, as the
original grammar allowed). A keyword argument's name (`KEY`) is a name followed
by `:`; lexing it apart from a step name is what lets `git url: 'u' sh 'x'`
(commas optional) parse with one token of look-ahead. Comments are gone before
lark sees the text (see `source`).
"""

from __future__ import annotations

from lark import Lark

from otto.parser.build import Builder
from otto.parser.values import CONCAT, IT, STRING

# A value (`VALUE`): one terminal, see `otto.parser.values`.
GRAMMAR_TEXT = r"""
start: use? PIPELINE "{" _item* "}"
_item: stage | steps | parallel | fanout | each | _hook
use: USE "{" LIBRARY* "}"

stage: STAGE "{" _stage_item* steps _hook* "}"
_stage_item: _property | environment | runtime | _gate | cache | _hook
cache: CACHE "{" (USE PROP_NAME | PROP_NAME "=" (STR | names))* "}"
_property: (PROP_NAME | STEPS | ENVIRONMENT | RUNTIME) "=" (VALUE | names)
environment: ENVIRONMENT "{" (ENV_NAME "=" VALUE)* "}"
runtime: RUNTIME "{" (PROP_NAME "=" VALUE | docker)* "}"
docker: DOCKER "{" (PROP_NAME "=" VALUE)* "}"

each: EACH "(" (_each_values | _each_axes) ")" "{" stage "}"
_each_values: STR ("," STR)* ","?
_each_axes: KEY ":" names ("," KEY ":" names)* ","?

_hook: rollback | notify
rollback: ROLLBACK "{" steps "}"
notify: NOTIFY "{" outcome* "}"
outcome: (FAILURE | SUCCESS | COMPLETE) "{" steps "}"

parallel: PARALLEL "{" _gate* stage* "}"
fanout: FANOUT "{" _gate* stage* "}"

_gate: gates | when
when: WHEN "{" expr "}"
gates: GATES "{" (enter | exit)* "}"
enter: ENTER "{" expr? input? gate_timeout? "}"
exit: EXIT "{" input gate_timeout? "}"
gate_timeout: TIMEOUT "=" STR
input: INPUT STR ","? (KEY ":" _value ","?)*
     | INPUT (KEY ":" _value ","?)+
_value: STR | names
names: "[" (STR ("," STR)* ","?)? "]"

?expr: and_expr
     | expr _OR and_expr -> or_
?and_expr: not_expr
     | and_expr _AND not_expr -> and_
?not_expr: comparison
     | _NOT not_expr -> not_
?comparison: operand
     | operand COMPARE operand -> compare
?operand: STR -> string
     | TRUE -> true
     | FALSE -> false
     | VARIABLE -> variable
     | "(" expr ")"

steps: STEPS "{" step+ "}"
step: STEP_NAME (VALUE ","?)+ (KEY ":" VALUE ","?)* _block?
    | STEP_NAME (KEY ":" VALUE ","?)+ _block?
_block: "{" step+ "}"

PIPELINE.2: /pipeline(?![A-Za-z0-9_])/
STAGE.2: /stage(?![A-Za-z0-9_])/
STEPS.2: /steps(?![A-Za-z0-9_])/
PARALLEL.2: /parallel(?![A-Za-z0-9_])/
FANOUT.2: /fanout(?![A-Za-z0-9_])/
ENVIRONMENT.2: /environment(?![A-Za-z0-9_])/
RUNTIME.2: /runtime(?![A-Za-z0-9_])/
DOCKER.2: /docker(?![A-Za-z0-9_])/
CACHE.2: /cache(?![A-Za-z0-9_])/
WHEN.2: /when(?![A-Za-z0-9_])/
ROLLBACK.2: /rollback(?![A-Za-z0-9_])/
NOTIFY.2: /notify(?![A-Za-z0-9_])/
FAILURE.2: /failure(?![A-Za-z0-9_])/
SUCCESS.2: /success(?![A-Za-z0-9_])/
COMPLETE.2: /complete(?![A-Za-z0-9_])/
GATES.2: /gates(?![A-Za-z0-9_])/
ENTER.2: /enter(?![A-Za-z0-9_])/
EXIT.2: /exit(?![A-Za-z0-9_])/
INPUT.2: /input(?![A-Za-z0-9_.])/
TIMEOUT.2: /timeout(?![A-Za-z0-9_.])/
TRUE.2: /true(?![A-Za-z0-9_.])/
FALSE.2: /false(?![A-Za-z0-9_.])/
USE.2: /use(?![A-Za-z0-9_])/
EACH.2: /each(?=[ \t\f\v\n]*\()/
VALUE.2: /@VALUE@/
LIBRARY: /[A-Za-z][A-Za-z0-9_-]*/
VARIABLE: /[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*/
COMPARE: "==" | "!=" | "=~"
_AND: "&&"
_OR: "||"
_NOT: "!"
KEY.3: /[A-Za-z][A-Za-z0-9_]*(?=[ \t\f\v\n]*:)/
STEP_NAME: /[A-Za-z][A-Za-z0-9_]*/
PROP_NAME: /[A-Za-z][A-Za-z0-9_]*/
ENV_NAME: /[A-Za-z_][A-Za-z0-9_]*/
STR: /@STR@/
WS: /[ \t\f\v\n]+/
%ignore WS
"""
GRAMMAR = GRAMMAR_TEXT.replace("@STR@", STRING).replace("@VALUE@", f"{STRING}|{IT}|{CONCAT}")

# What each terminal is, in the words of an error message, in the order they are listed.
# `use` (the original's optional library block) is left out: "expected 'pipeline'" says
# what an empty or stray file needs.
HUMAN = {
    "PIPELINE": "'pipeline'",
    "STAGE": "'stage'",
    "STEPS": "'steps'",
    "PARALLEL": "'parallel'",
    "FANOUT": "'fanout'",
    "EACH": "'each'",
    "ENVIRONMENT": "'environment'",
    "RUNTIME": "'runtime'",
    "DOCKER": "'docker'",
    "CACHE": "'cache'",
    "WHEN": "'when'",
    "GATES": "'gates'",
    "ROLLBACK": "'rollback'",
    "NOTIFY": "'notify'",
    "FAILURE": "'failure'",
    "SUCCESS": "'success'",
    "COMPLETE": "'complete'",
    "ENTER": "'enter'",
    "EXIT": "'exit'",
    "INPUT": "'input'",
    "TIMEOUT": "'timeout'",
    "VARIABLE": "a variable (branch, tag, event, project, pull_request.fork, env.NAME, vars.NAME)",
    "TRUE": "'true'",
    "FALSE": "'false'",
    "LIBRARY": "a step library (stdlib)",
    "COMPARE": "'==', '!=' or '=~'",
    "_NOT": "'!'",
    "_AND": "'&&'",
    "_OR": "'||'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "PROP_NAME": "a property name",
    "ENV_NAME": "a variable name",
    "STR": "a string",
    "VALUE": "a string",
    "KEY": "a keyword argument (name: 'value')",
    "COMMA": "','",
    "LBRACE": "'{'",
    "STEP_NAME": "a step name",
    "RBRACE": "'}'",
    "EQUAL": "'='",
    "COLON": "':'",
    "$END": "the end of the file",
}

PARSER = Lark(
    GRAMMAR,
    parser="lalr",
    lexer="contextual",
    transformer=Builder(),
    propagate_positions=False,
    maybe_placeholders=False,
)
