"""A Block Kit message as a standalone HTML page that looks like Slack's Block Kit Builder
preview (a bot message: avatar, name, APP badge, time), and a PNG of it taken with Debian's
Chromium through Playwright, launched as tests/browser/conftest.py launches it.

Only what integrations.slack.blocks produces is drawn in full (section and context blocks
with mrkdwn, actions with buttons); header, divider and plain_text are drawn simply. The page
loads nothing: no fonts, no scripts, no images from anywhere.
"""

from __future__ import annotations

import html
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

BOT_NAME = "Ask Veluna"

# `<...>` in Slack-escaped mrkdwn is always markup (a link, a mention): text's own <, > and &
# arrive as &lt;, &gt; and &amp;.
_TOKEN = re.compile(r"<([^<>\n]*)>")
_CODE = re.compile(r"`([^`\n]+)`")
_SLOT = re.compile(r"\x00(\d+)\x00")
_SAFE_SCHEMES = ("http://", "https://", "mailto:")


def _emphasis(marker: str, tag: str) -> tuple[re.Pattern[str], str]:
    m = re.escape(marker)
    pattern = re.compile(rf"(?<![\w{m}]){m}(?=\S)([^{m}\n]*?\S){m}(?![\w{m}])")
    return pattern, rf"<{tag}>\1</{tag}>"


_EMPHASIS = [_emphasis("*", "strong"), _emphasis("_", "em"), _emphasis("~", "del")]


def slack_unescape(text: str) -> str:
    """Slack's three escapes undone: what the reader sees."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def render_mrkdwn(text: str) -> str:
    """Slack mrkdwn (already Slack-escaped) as safe HTML: *bold*, _italic_, ~strike~,
    `code`, <url|label> links, <@U…>/<#C…|name>/<!channel> mentions, line breaks."""
    slots: list[str] = []

    def keep(fragment: str) -> str:
        slots.append(fragment)
        return f"\x00{len(slots) - 1}\x00"

    text = text.replace("\x00", "")
    text = _TOKEN.sub(lambda m: keep(_token_html(m.group(1))), text)
    text = _CODE.sub(lambda m: keep(f"<code>{_text_html(m.group(1))}</code>"), text)
    text = _text_html(text)
    for pattern, replacement in _EMPHASIS:
        text = pattern.sub(replacement, text)
    text = text.replace("\n", "<br>")
    while _SLOT.search(text):  # a slot may hold a slot (a link inside `code`)
        text = _SLOT.sub(lambda m: slots[int(m.group(1))], text)
    return text


def _text_html(text: str) -> str:
    return html.escape(slack_unescape(text), quote=False)


def _token_html(inner: str) -> str:
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return f'<span class="mention">@{_text_html(label or target[1:])}</span>'
    if target.startswith("#"):
        return f'<span class="mention">#{_text_html(label or target[1:])}</span>'
    if target.startswith("!"):
        special = target[1:].split("^")[0]
        return f'<span class="mention">@{_text_html(label or special)}</span>'
    url = slack_unescape(target)
    shown = _text_html(label) if label else html.escape(url, quote=False)
    if not url.lower().startswith(_SAFE_SCHEMES):
        return shown
    return f'<a href="{html.escape(url, quote=True)}" rel="noopener">{shown}</a>'


def _text_object_html(obj: dict) -> str:
    if obj.get("type") == "mrkdwn":
        return render_mrkdwn(obj.get("text", ""))
    return html.escape(obj.get("text", ""), quote=False).replace("\n", "<br>")


def _block_html(block: dict) -> str:
    kind = block.get("type")
    if kind == "section":
        parts = []
        if block.get("text"):
            parts.append(f'<div class="text">{_text_object_html(block["text"])}</div>')
        if block.get("fields"):
            fields = "".join(f"<div>{_text_object_html(f)}</div>" for f in block["fields"])
            parts.append(f'<div class="fields">{fields}</div>')
        return f'<div class="block section">{"".join(parts)}</div>'
    if kind == "context":
        items = "".join(
            f"<span>{_text_object_html(e)}</span>"
            for e in block.get("elements", [])
            if e.get("type") in {"mrkdwn", "plain_text"}
        )
        return f'<div class="block context">{items}</div>'
    if kind == "actions":
        buttons = "".join(
            _button_html(e) for e in block.get("elements", []) if e.get("type") == "button"
        )
        return f'<div class="block actions">{buttons}</div>'
    if kind == "header":
        return f'<div class="block header">{_text_object_html(block.get("text", {}))}</div>'
    if kind == "divider":
        return '<hr class="block divider">'
    return f'<div class="block unknown">[{html.escape(str(kind))} block]</div>'


def _button_html(button: dict) -> str:
    style = button.get("style")
    css = f"button {style}" if style in {"primary", "danger"} else "button"
    label = html.escape(button.get("text", {}).get("text", ""), quote=False)
    value = html.escape(str(button.get("value", "")), quote=True)
    action = html.escape(str(button.get("action_id", "")), quote=True)
    return (
        f'<button type="button" class="{css}" data-action-id="{action}" '
        f'data-value="{value}">{label}</button>'
    )


_CSS = """
* { box-sizing: border-box; }
html, body { margin: 0; background: #f8f8f8; }
body {
  font-family: Lato, "Helvetica Neue", Helvetica, "Liberation Sans", Arial, sans-serif;
  color: #1d1c1d; font-size: 15px; line-height: 1.46668; -webkit-font-smoothing: antialiased;
}
.frame { padding: 16px; }
.message {
  display: flex; gap: 8px; padding: 8px 20px 12px 20px; background: #fff;
  border: 1px solid #dddddd; border-radius: 8px;
}
.avatar {
  flex: none; width: 36px; height: 36px; margin-top: 4px; border-radius: 6px;
  background: #4a154b; color: #fff; font-weight: 900; font-size: 15px;
  display: flex; align-items: center; justify-content: center; letter-spacing: -0.5px;
}
.body { flex: 1; min-width: 0; }
.meta { display: flex; align-items: baseline; gap: 4px; }
.name { font-weight: 900; font-size: 15px; }
.badge {
  font-size: 10px; font-weight: 700; line-height: 1.25; padding: 1px 3px; border-radius: 2px;
  background: rgba(29, 28, 29, 0.13); color: rgba(29, 28, 29, 0.7); align-self: center;
}
.time { font-size: 12px; color: #616061; }
.block { margin: 4px 0; overflow-wrap: anywhere; }
.section .fields { display: grid; grid-template-columns: 1fr 1fr; gap: 4px 16px; }
.context { font-size: 12px; line-height: 1.5; color: #616061; display: flex; gap: 8px; }
.header { font-size: 18px; font-weight: 900; }
.divider { border: 0; border-top: 1px solid #dddddd; }
a { color: #1264a3; text-decoration: none; }
code {
  font-family: Monaco, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12px;
  color: #e01e5a; background: rgba(29, 28, 29, 0.04); border: 1px solid rgba(29, 28, 29, 0.13);
  border-radius: 3px; padding: 2px 3px 1px;
}
.mention {
  color: #1264a3; background: rgba(29, 155, 209, 0.1); border-radius: 3px; padding: 0 2px;
}
.actions { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 8px; }
.button {
  font: inherit; font-size: 13px; font-weight: 700; height: 28px; padding: 0 12px;
  color: #1d1c1d; background: #fff; border: 1px solid rgba(29, 28, 29, 0.3);
  border-radius: 4px; box-shadow: 0 1px 3px rgba(0, 0, 0, 0.08);
}
.button.primary { color: #fff; background: #007a5a; border-color: #007a5a; }
.button.danger { color: #fff; background: #e01e5a; border-color: #e01e5a; }
"""


def render_message(
    blocks: list[dict],
    *,
    bot_name: str = BOT_NAME,
    time: str = "10:42 AM",
    title: str = "Block Kit preview",
) -> str:
    """``blocks`` as a standalone HTML page: one bot message, in the Builder's style."""
    initials = "".join(word[0] for word in bot_name.split()[:2]).upper() or "?"
    body = "\n".join(_block_html(block) for block in blocks)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<div class="frame">
<div class="message">
<div class="avatar" aria-hidden="true">{html.escape(initials)}</div>
<div class="body">
<div class="meta"><span class="name">{html.escape(bot_name)}</span><span class="badge">APP</span>\
<span class="time">{html.escape(time)}</span></div>
{body}
</div>
</div>
</div>
</body>
</html>
"""


def screenshot(html_page: str, path: Path, width: int = 720, *, timeout: float = 60) -> Path:
    """``html_page`` rendered by /usr/bin/chromium and saved as a PNG at ``path`` (the whole
    page, ``width`` CSS pixels wide). Playwright's sync API runs in a fresh thread: the main
    thread may hold an event loop (the browser tests' session fixture keeps one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="blockkit-screenshot") as pool:
        return pool.submit(_screenshot, html_page, path, width).result(timeout=timeout)


def _screenshot(html_page: str, path: Path, width: int) -> Path:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 100})
            page.route("**/*", lambda route: route.abort())  # the page must load nothing
            page.set_content(html_page, wait_until="load")
            page.screenshot(path=str(path), full_page=True)
        finally:
            browser.close()
    return path
