"""A status badge as an SVG image, in the flat style of shields.io."""

from __future__ import annotations

from html import escape

# A run's status → the badge's word and colour; no complete run: unknown.
LOOKS = {
    "Success": ("passing", "#4c1"),
    "Failed": ("failing", "#e05d44"),
    "Unstable": ("unstable", "#dfb317"),
    "Aborted": ("aborted", "#9f9f9f"),
    "Error": ("error", "#fe7d37"),
}
UNKNOWN = ("unknown", "#9f9f9f")
CHAR_WIDTH, PADDING = 7, 10  # px; Verdana 11 averages a little under 7 px a character


def badge_svg(label: str, status: str | None) -> str:
    """The badge saying `label` and what `status` means (`passing`, `failing`, …)."""
    word, colour = LOOKS.get(status or "", UNKNOWN)
    left, right = _width(label), _width(word)
    total = left + right
    label_text, word_text = escape(label), escape(word)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img"'
        f' aria-label="{label_text}: {word_text}"><title>{label_text}: {word_text}</title>'
        '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb"'
        ' stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        f'<rect width="{total}" height="20" fill="url(#s)"/></g>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif"'
        ' font-size="11">'
        f'<text x="{left / 2}" y="14">{label_text}</text>'
        f'<text x="{left + right / 2}" y="14">{word_text}</text></g></svg>'
    )


def _width(text: str) -> int:
    return len(text) * CHAR_WIDTH + PADDING
