"""Small HTML helpers for a self-contained page: escaping, tables, inline images and audio."""
from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import soundfile as sf

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 1.5em auto; max-width: 1200px;
       padding: 0 1em; color: #1b1b1b; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .86em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: right; vertical-align: top; }
th { background: #f2f2f2; } td.l, th.l { text-align: left; }
tr.ref td { background: #f7f7fb; } tr.pub td { background: #fffbea; color: #444; }
tr.group td { background: #eef3f8; font-weight: bold; }
.ci { color: #777; font-size: .85em; white-space: nowrap; }
.banner { border: 3px solid #b00020; background: #fde7ea; color: #7a0014; font-weight: bold; font-size: 1.15em;
          padding: .7em 1em; margin: 1em 0; }
.note { color: #555; font-size: .9em; } .warn { color: #9a4d00; font-weight: bold; }
.better { background: #e3f5e1 !important; } .worse { background: #fbe4e4 !important; }
.moot { color: #999; }  /* a difference that is no finding: neither system beats the video-blind baseline */
audio { width: 210px; height: 32px; } img { max-width: 100%; }
.charts { display: flex; flex-wrap: wrap; gap: .5em 1.5em; align-items: flex-start; }
ul.answers li { margin: .3em 0; }
.small { font-size: .8em; color: #555; } code { font-size: .9em; }
"""


def esc(value: Any) -> str:
    """HTML-escaped text of any value."""
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 2) -> str:
    """A number for a table cell; a dash for missing values."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "&ndash;"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.{digits}f}"


def img(png: bytes, alt: str) -> str:
    """An `<img>` with the PNG inline as a data URI."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV file bytes (clipped to [-1, 1])."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def audio(samples: np.ndarray, sample_rate: int, label: str) -> str:
    """An `<audio>` player with the WAV inline as a data URI."""
    data = base64.b64encode(wav_bytes(samples, sample_rate)).decode()
    return f'<audio controls preload="none" title="{esc(label)}" src="data:audio/wav;base64,{data}"></audio>'


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], row_classes: Sequence[str] | None = None,
          left: int = 1, caption: str = "", groups: Mapping[int, str] | None = None) -> str:
    """A table of already-escaped cells; the first `left` columns are left-aligned.

    `groups` maps a row index to a full-width heading row placed before that row.
    """
    out = ["<table>"]
    if caption:
        out.append(f"<caption class='l'>{caption}</caption>")
    out.append("<tr>" + "".join(f"<th class='{'l' if i < left else ''}'>{h}</th>" for i, h in enumerate(headers)) + "</tr>")
    for r, cells in enumerate(rows):
        if groups and r in groups:
            out.append(f"<tr class='group'><td class='l' colspan='{len(headers)}'>{groups[r]}</td></tr>")
        cls = f" class='{row_classes[r]}'" if row_classes and row_classes[r] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td class='{'l' if i < left else ''}'>{c}</td>" for i, c in enumerate(cells))
                   + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def page(title: str, body: str) -> str:
    """The whole document: inline CSS, no scripts, no external resources."""
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")
