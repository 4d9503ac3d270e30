"""The no-JavaScript log view shows text, never terminal escape sequences: OSC
(titles, hyperlinks, clipboard), DCS, CSI beyond colours and lone escapes are stripped,
not only colours. A real server runs a real step; the page is read as HTML."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

from serverkit import running_server

# printf arguments (octal escapes only: \134 is the backslash of ST, `ESC \`); each
# sequence wraps or precedes visible text that must stay.
NOISY = (
    r"\033]0;TITLE-PAYLOAD\007"  # OSC: window title, BEL-terminated
    r"\033]8;;https://evil.example/\033\134link-text\033]8;;\033\134"  # OSC 8 hyperlink, ST
    r"\033]52;c;Q0xJUEJPQVJE\007"  # OSC 52: write the clipboard
    r"\033Pq#0;DCS-PAYLOAD\033\134"  # DCS (sixel)
    r"\033[2J\033[1;1H\033[?25l\033[31mred\033[0m"  # CSI: clear, move, hide cursor, colour
    r"\033(B\0337plain\0338\007\n"  # charset, save/restore cursor, bell
)


def test_the_log_view_strips_every_escape_sequence(tmp_path: Path) -> None:
    with running_server(tmp_path / "home") as server, server.client() as c:
        ottofile = f"pipeline {{ stage {{ name = 'noisy' steps {{ sh 'printf \"{NOISY}\"' }} }} }}"
        created = c.post("/v1/pipelines", json={"ottofile": ottofile})
        assert created.status_code == 201, created.text
        uuid = created.json()["uuid"]
        deadline = time.monotonic() + 30
        while (run := c.get(f"/v1/pipelines/{uuid}").json())["state"] != "Complete":
            assert time.monotonic() < deadline, "the run did not finish"
            time.sleep(0.1)
        assert run["status"] == "Success"
        step = run["batches"][0]["contexts"][0]["steps"][0]["uuid"]
        key = f"{uuid}/{run['batches'][0]['contexts'][0]['uuid']}/{step}.log"
        assert b"\x1b]0;TITLE" in c.get(f"/v1/objects/{key}").content  # stored as it came

        page = c.get(f"/pipelines/{uuid}", params={"step": step})
        match = re.search(r'<pre id="log-text"[^>]*>(.*?)</pre>', page.text, re.S)
        assert match, page.text[:500]
        text = html.unescape(re.sub(r"<[^>]*>", "", match.group(1)))  # lines, numbered
    # What the step printed (the shell's `+ printf …` trace names the payloads as text).
    shown = "\n".join(line for line in text.splitlines() if not line.startswith("+ "))
    assert "link-text" in shown and "red" in shown and "plain" in shown
    for payload in ("TITLE-PAYLOAD", "evil.example", "Q0xJUEJPQVJE", "DCS-PAYLOAD"):
        assert payload not in shown
    assert shown.strip() == "link-textredplain", repr(shown)
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", text), repr(text)
