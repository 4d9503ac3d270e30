"""The Ottofile language: `parse()` text into a pipeline model, `render()` a model as text,
`format_ottofile()` a file in the canonical style with its comments kept (`otto fmt`).

The language, compatible with the original Otto's grammar::

    file        := ('use' '{' 'stdlib'* '}')? pipeline
    pipeline    := 'pipeline' '{' (stage | steps | parallel | fanout | each | notify)* '}'
    stage       := 'stage' '{' (property | environment | runtime | gate | hook)* steps hook* '}'
    hook        := 'rollback' '{' steps '}' | notify
    notify      := 'notify' '{' (('failure' | 'success' | 'complete') '{' steps '}')+ '}'
    each        := 'each' '(' (STR (',' STR)* | axis (',' axis)*) ','? ')' '{' stage '}'
    axis        := IDENT ':' '[' STR (',' STR)* ','? ']'
    value       := STR | 'it' ('.' IDENT)? | 'concat' '(' part (',' part)* ','? ')'
    part        := STR | 'it' ('.' IDENT)?
    parallel    := 'parallel' '{' gate* stage* '}'
    fanout      := 'fanout' '{' gate* stage* '}'
    gate        := 'when' '{' expr '}' | 'gates' '{' (enter | exit)* '}'
    enter       := 'enter' '{' expr? input? ('timeout' '=' STR)? '}'
    exit        := 'exit' '{' input ('timeout' '=' STR)? '}'
    input       := 'input' (STR ','? ikwargs? | ikwargs)
    ikwargs     := (('message' | 'parameters') ':' (STR | '[' STR (',' STR)* ']') ','?)+
    expr        := expr '||' expr | expr '&&' expr | '!' expr
                 | operand ('==' | '!=' | '=~') operand | operand
    operand     := STR | 'true' | 'false' | VARIABLE | '(' expr ')'
    VARIABLE    := branch | tag | event | project | pull_request.fork | env.NAME | vars.NAME
    environment := 'environment' '{' (NAME '=' STR)* '}'
    steps       := 'steps' '{' step+ '}'
    step        := IDENT (args timeout? | kwargs) block?
    args        := (STR ','?)+
    timeout     := 'timeout' ':' STR ','?
    kwargs      := (IDENT ':' STR ','?)+
    block       := '{' step+ '}'
    property    := IDENT '=' STR
    IDENT       := [A-Za-z][A-Za-z0-9_]*          NAME may also start with '_'
    STR         := '…' (may span lines; '' is a quote; nothing else is an escape)

Comments (`// …` to the end of the line, `/* … */` nesting) and whitespace
(spaces, tabs, newlines) may stand between any two tokens. CR LF and CR line
ends read as LF, in strings too; a leading byte-order mark is ignored.

Mapping: each top-level `stage` and each top-level (orphan) `steps` block is
one Linear batch with one context (an orphan's context has no properties);
`parallel` is one Parallel batch and `fanout` one Fanout batch, with a context
per stage. A stage's `environment` fills its context's `environment`. Every
step's `context` is the uuid of the context it belongs to; every uuid is a
fresh uuid4.

Extensions over the original (every older file keeps its meaning):

- `fanout { stage* }` and a stage's `environment { NAME = '…' }` block (at
  most one per stage, anywhere among its properties, each variable once).
- A step may end with a block of nested steps, `{ step+ }`, e.g.
  `dir 'build' { sh 'make' }` or `dir directory: 'build' { sh 'make' }`. The
  block is a parameter holding a list of step objects (each with its own uuid
  and its context's uuid): with positional arguments it is appended as the
  last element; with keyword arguments it is the key `block` (so a step with
  a block may not also have a `block:` argument). A step still needs at
  least one argument before its block, and blocks nest at most
  `MAX_BLOCK_DEPTH` (50) deep.
- Timeouts: a stage's `timeout = '10m'` property, and a `timeout: '30s'` argument
  any step takes, after positional arguments too (`sh 'make', timeout: '30s'`).
  A step's timeout is the model step's `timeout` field (left out when unset), not
  one of its parameters. Either value must be a duration (`30s`, `10m`, `1h`,
  `1h30m`, or seconds), else it is an error at the value.
- `stage`, `steps`, `environment`, … stay usable as names wherever no keyword
  can stand (a step named `stage`, a keyword argument named `environment`, the
  property `runtime`).

- Gates (see `otto.conditions` for what an expression means): `when { EXPR }` is
  `gates { enter { EXPR } }`. `!` binds tighter than `&&`, `&&` than `||`, and a
  comparison tighter than `!` (so `!a == 'x'` is `!(a == 'x')`); comparisons do not
  chain. A stage's gate fills its context's `gate` (`condition`: canonical text and
  JSON tree; `enter_input`, `exit_input`: message, parameters, timeout in seconds); a
  `parallel`/`fanout` block's gate is copied into each of its contexts. A stage sets
  each part (condition, enter input, exit input) at most once, counting its block's;
  an unknown variable, a timeout without an input, a bad duration, a parameter name
  that is not a name, or one named twice is an error where it stands.

- Matrices: `each('a', 'b') { stage { … } }` is one Parallel batch with a context
  per value, in order; `each(os: ['l', 'm'], py: ['1', '2'])` one per combination
  of its axes (the last axis varies fastest). Wherever a stage, its `environment`,
  `runtime` or a step takes a string, a `value` may stand: `it` is this context's
  value (`it.AXIS` for the named form), `concat(…)` joins its parts (outside an
  `each` only of strings). Each context's `environment` gets `OTTO_EACH` (named
  form: `OTTO_EACH_<AXIS>`, upper case) after the stage's own variables, which may
  not set it. The stage's gate is copied into each context. Two contexts of one
  `each` with the same name, a value listed twice, `it` outside an `each`, and an
  axis it does not have are errors where they stand; a timeout is a plain string.
  `it` and `concat(` read as values wherever a value may stand (so a step named
  `it` cannot follow another step). `parse_syntax` also returns the file's
  `Syntax` (its `use` libraries and each `each` as a `Matrix`: position, axes,
  each context's values, the stage as a template), which `render` and
  `format_ottofile` use to write the `each` block instead of its expansion, and
  `otto explain` to say which values each context got.
- `use { stdlib }`: the original's block naming the step libraries in scope, accepted
  before `pipeline`; `stdlib` (the standard steps) is the only library.
- Hooks: a stage's `rollback { steps { … } }` and `notify { failure { steps { … } }
  success { … } complete { … } }`, anywhere among its items (each at most once; in a
  `notify`, each outcome at most once, at least one), and the pipeline's `notify { … }`
  (at most once, anywhere among its items). Each is a context of its own (`Context.hook`:
  what it reacts to, `on`, and the stage context it reacts to, `of`, None for the
  pipeline's) in the trailing batches: one Parallel batch of every rollback (stage
  order), then one of every notification (the stages' in stage order, each stage's as
  written, then the pipeline's); an empty one is left out. A stage's hook context has
  the stage's properties but `name` and `timeout`, named "<stage name> rollback" or
  "<stage name> notify failure" ("rollback", "notify failure" for an unnamed stage, and
  the pipeline's), and the stage's `environment` and `credentials`, never its gate or
  cache; a pipeline's has only its name. In an `each`, each context gets its own hooks,
  their values evaluated for it (`Matrix.hooks` holds the template's). A `rollback` at
  pipeline level, an empty `notify` and a second one of anything are errors where they
  stand. `render` writes a stage's hooks after its `steps`, the pipeline's last.

Stricter than the original: a stage's properties are those in `STAGE_PROPERTIES`
(`name`, `runtime`, `arch`, `labels`, `image`, `cpus`, `memory`, `timeout`,
`retry_on`: the failures after which its context runs again by itself, comma-separated
among `agent_lost` and `provision_failed`, checked where it stands); any other is an
error at its name, suggesting the nearest one (the original took any
name, and its own files only ever set `name`).

Kept from the original: a `stages { }` wrapper and an empty `steps {}` are
errors; a repeated property or keyword argument keeps its last value.
"""

from otto.parser.build import MAX_BLOCK_DEPTH
from otto.parser.errors import ParseError
from otto.parser.fmt import format_ottofile
from otto.parser.parsing import parse, parse_located, parse_syntax
from otto.parser.render import render

__all__ = [
    "MAX_BLOCK_DEPTH",
    "ParseError",
    "format_ottofile",
    "parse",
    "parse_located",
    "parse_syntax",
    "render",
]
