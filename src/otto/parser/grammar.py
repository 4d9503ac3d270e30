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

GRAMMAR = r"""
start: PIPELINE "{" _item* "}"
_item: stage | steps | parallel | fanout

stage: STAGE "{" _stage_item* steps "}"
_stage_item: _property | environment | runtime
_property: (PROP_NAME | STEPS | ENVIRONMENT | RUNTIME) "=" STR
environment: ENVIRONMENT "{" (ENV_NAME "=" STR)* "}"
runtime: RUNTIME "{" (PROP_NAME "=" STR | docker)* "}"
docker: DOCKER "{" (PROP_NAME "=" STR)* "}"

parallel: PARALLEL "{" stage* "}"
fanout: FANOUT "{" stage* "}"

steps: STEPS "{" step+ "}"
step: STEP_NAME (STR ","?)+ (KEY ":" STR ","?)* _block?
    | STEP_NAME (KEY ":" STR ","?)+ _block?
_block: "{" step+ "}"

PIPELINE.2: /pipeline(?![A-Za-z0-9_])/
STAGE.2: /stage(?![A-Za-z0-9_])/
STEPS.2: /steps(?![A-Za-z0-9_])/
PARALLEL.2: /parallel(?![A-Za-z0-9_])/
FANOUT.2: /fanout(?![A-Za-z0-9_])/
ENVIRONMENT.2: /environment(?![A-Za-z0-9_])/
RUNTIME.2: /runtime(?![A-Za-z0-9_])/
DOCKER.2: /docker(?![A-Za-z0-9_])/
KEY.3: /[A-Za-z][A-Za-z0-9_]*(?=[ \t\f\v\n]*:)/
STEP_NAME: /[A-Za-z][A-Za-z0-9_]*/
PROP_NAME: /[A-Za-z][A-Za-z0-9_]*/
ENV_NAME: /[A-Za-z_][A-Za-z0-9_]*/
STR: /'[^']*+(?:''[^']*+)*+'/
WS: /[ \t\f\v\n]+/
%ignore WS
"""

# What each terminal is, in the words of an error message, in the order they are listed.
HUMAN = {
    "PIPELINE": "'pipeline'",
    "STAGE": "'stage'",
    "STEPS": "'steps'",
    "PARALLEL": "'parallel'",
    "FANOUT": "'fanout'",
    "ENVIRONMENT": "'environment'",
    "RUNTIME": "'runtime'",
    "DOCKER": "'docker'",
    "PROP_NAME": "a property name",
    "ENV_NAME": "a variable name",
    "STR": "a string",
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
