"""``harness leaderboard render --site DIR``: the leaderboard as a static web site.

The page is the leaderboard README (:func:`harness.results.render.render_page`: every section's
tables, the label-efficiency and per-scale plots) rendered to HTML by markdown-it, followed by
an index of every record with links to its JSON (copied into the site) and to its overlay where
one was filed. One folder, no server, no external asset: styles are inline and every figure and
record is a relative link, so the folder can be opened from disk or served as it is.
"""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.data.io import lies_inside, write_text_atomic
from harness.errors import HarnessError
from harness.results.leaderboard import OVERLAY_SUFFIX, PER_IMAGE_SUFFIX, RecordStore
from harness.results.render import DEFAULT_METRICS, render_page
from harness.results.tables import TestChoice

INDEX = "index.html"
RECORDS_DIR = "records"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.88rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; height: auto; }
code, pre { background: #f6f6f6; }
pre { padding: 0.6rem; overflow-x: auto; }
h2 { border-top: 2px solid #ddd; padding-top: 1rem; }
"""

# marks, once the page has loaded, how many of its images decoded: the site test reads it from
# the DOM a headless browser dumps (a broken figure link shows as a lower count)
_LOADED = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var shown = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-images", images.length);
  document.body.setAttribute("data-images-shown", shown);
});
"""


def _records_index(store: RecordStore, site: Path, release: str | None) -> str:
    """The record list: section key, method, budget, seed, headline, links to the copied files."""
    rows = []
    for filed in sorted(store.select(release), key=lambda f: (f.record.dataset.key, f.record.method.name,
                                                               f.record.budget_images, f.record.seeds.train)):
        r = filed.record
        rel = Path(RECORDS_DIR) / r.dataset.key
        target = site / rel
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(filed.path, target / filed.path.name)
        links = [f'<a href="{html.escape((rel / filed.path.name).as_posix())}">record</a>']
        side = filed.path.with_name(f"{r.run_id}{PER_IMAGE_SUFFIX}")
        if side.is_file():
            shutil.copyfile(side, target / side.name)
            links.append(f'<a href="{html.escape((rel / side.name).as_posix())}">per image</a>')
        overlay = filed.path.with_name(f"{r.run_id}{OVERLAY_SUFFIX}")
        if overlay.is_file():
            shutil.copyfile(overlay, target / overlay.name)
            links.append(f'<a href="{html.escape((rel / overlay.name).as_posix())}">overlay</a>')
        head = r.headline
        value = "n/a" if head.value is None else f"{head.value:.4f}"
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            r.dataset.key, r.settings.get("task", ""), r.method.name, r.budget, r.seeds.train,
            f"{head.metric} {value}")) + f"<td>{' · '.join(links)}</td></tr>")
    header = "".join(f"<th>{h}</th>" for h in ("dataset", "task", "method", "budget", "seed", "headline", "files"))
    return (f"<h2 id=\"records\">Every record ({len(rows)})</h2>\n<table>\n<thead><tr>{header}</tr></thead>\n"
            "<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>\n")


def render_site(store: RecordStore, site: Path, command: str, release: str | None = None,
                metrics: Sequence[str] = DEFAULT_METRICS, test: TestChoice = "auto",
                log: Callable[[str], None] = print) -> Path:
    """Write the site into ``site``; returns its index.html."""
    from markdown_it import MarkdownIt

    if lies_inside(site, store.root):  # the site copies the records: there it would copy them onto themselves
        raise HarnessError(f"--site {site}: must lie outside the leaderboard folder {store.root}")
    site.mkdir(parents=True, exist_ok=True)
    page = render_page(store, command, site, release, metrics, test, log=log)
    page = "\n".join(line for line in page.splitlines() if not line.startswith("<!--"))  # the README's note
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(page)
    # sections get anchors and a table of contents above them (a reader jumps to the newest one)
    titles = re.findall(r"<h2>(.*?)</h2>", body)
    for k, title in enumerate(titles):
        body = body.replace(f"<h2>{title}</h2>", f'<h2 id="section-{k + 1}">{title}</h2>', 1)
    contents = "".join(f'<li><a href="#section-{k + 1}">{title}</a></li>' for k, title in enumerate(titles))
    first = body.find('<h2 id="section-1">')
    if first >= 0:
        contents += '<li><a href="#records">every record</a></li>'
        body = body[:first] + f"<h2>Sections</h2>\n<ol>{contents}</ol>\n" + body[first:]
    document = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>harness leaderboard{' ' + html.escape(release) if release else ''}</title>\n"
        f"<style>{_STYLE}</style>\n<script>{_LOADED}</script>\n</head>\n<body>\n"
        f"{body}\n{_records_index(store, site, release)}</body>\n</html>\n"
    )
    return write_text_atomic(site / INDEX, document)
