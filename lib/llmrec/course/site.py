"""The course as a static website: the executed notebooks of one preset, README and the workshop.

    python -m llmrec site [--preset laptop] [--out site]      # or: make site

Builds <out>/index.html (README, with the course map), <out>/notebooks/NN_name.html (one page per
executed notebook of runs/<preset>/, its figures and outputs; the report, 07, among them),
<out>/docs/WORKSHOP.html, and copies every file those pages link to (figures, diagrams, CSVs; a
linked folder gets a listing page, a linked Markdown file its own page). Every page has the
chapter navigation; solutions are folded in <details> and open on a click.

Chapters are nbconvert's JupyterLab HTML export with the kit's template
(assets/site/llmrec_site) and nothing loaded from the internet: math is written as MathML
(latex2mathml) and the progress bars of tqdm as static HTML from the notebook's widget state, so
the site works offline and from any static host. Publish the folder as it is (README, "The course
as a website"). A link to a file that does not exist stops the build, naming the page and link.
"""

from __future__ import annotations

import argparse
import ast
import copy
import functools
import html
import io
import os
import re
import shutil
import subprocess
import sys
import tokenize
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import jinja2
import nbformat
from bs4 import BeautifulSoup
from latex2mathml.converter import convert
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from ..io import OutputFolderError, output_folder
from ..paths import list_notebooks, repo_root, runs_dir
from ..presets import list_presets
from .student import is_solution

ASSETS = Path(__file__).parent.parent / "assets" / "site"
TEMPLATE = "llmrec_site"
TITLE = "llmrec course"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.DOTALL)  # $$...$$, on its own lines
MATH = re.compile(r"(?<![\\$])\$(?!\$)([^$\n]+?)(?<!\\)\$")  # inline $...$, as the notebooks write it


class SiteError(ValueError):
    """Something the site cannot be built from: names the file or link and the fix."""


@dataclass
class Page:
    """A page of the site: where its content comes from (in the kit) and where it goes (in the site)."""
    source: Path            # relative to the kit's root: README.md, runs/laptop/02_x.ipynb, figures/
    target: PurePosixPath   # relative to the site's root: index.html, notebooks/02_x.html
    label: str = ""
    links_from: Path = field(default=Path("."))  # the folder the source's relative links start from
    kind: str = "markdown"  # markdown | chapter | listing


def _rel(target: PurePosixPath, page: PurePosixPath) -> str:
    """A link from `page` to `target`, both relative to the site's root."""
    return PurePosixPath(os.path.relpath(str(target), str(page.parent))).as_posix()


def _heading(markdown: str) -> str:
    """The first level-1 heading of a Markdown text, or ''."""
    m = re.search(r"^# (.+)$", markdown, re.MULTILINE)
    return m.group(1).strip() if m else ""


def _title(nb) -> str:
    return next((t for c in nb.cells if c.cell_type == "markdown" and (t := _heading(c.source))), "")


def static_widgets(nb):
    """The notebook with every widget output replaced by static HTML from its saved state (tqdm's
    bars: description, <progress>, counts) and the widget state dropped, so the page needs no
    widget script from a CDN. A bar that removed itself when it finished (tqdm's leave=False:
    closed, so absent from the saved state, or hidden) is dropped, as Jupyter shows it: its text
    form is its first state ("0% 0/2"), which would freeze it at the start on the page."""
    nb = copy.deepcopy(nb)
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})

    def model(ref: str) -> dict:
        return state.get(ref.removeprefix("IPY_MODEL_"), {})

    def render(m: dict) -> str:
        name, s = m.get("model_name", ""), m.get("state", {})
        if name == "HBoxModel":
            return "".join(render(model(c)) for c in s.get("children", []))
        if name in ("FloatProgressModel", "IntProgressModel"):
            return f'<progress value="{s.get("value", 0)}" max="{s.get("max", 100)}"></progress>'
        if name in ("HTMLModel", "LabelModel"):
            return f"<span>{s.get('value', '')}</span>"
        return ""

    def hidden(m: dict) -> bool:
        return model(m.get("state", {}).get("layout", "")).get("state", {}).get("visibility") == "hidden"

    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW not in data:
                kept.append(out)
                continue
            view = data.pop(WIDGET_VIEW)
            box = model(view.get("model_id", ""))
            rendered = render(box) if box and not hidden(box) else ""
            if rendered:
                data["text/html"] = f'<div class="site-progress">{rendered}</div>'
                data.pop("text/plain", None)  # the bar's first state, not its last
                kept.append(out)
        if "outputs" in cell:
            cell.outputs = kept
    return nb


def unfinished_cells(nb) -> list[int]:
    """The positions of the code cells papermill did not record as completed (a run killed midway
    leaves them "pending" or "running"; a failed one "failed"). Empty for a finished notebook."""
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
            and c.metadata.get("papermill", {}).get("status") != "completed"]


def _assignments(source: str) -> list[tuple[str, int, int, str]]:
    """(name, first line, last line, value's source) of each top-level `NAME = value` in a cell,
    read by Python's parser: a value may span lines or hold a '#' inside a string."""
    out = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out.append((node.targets[0].id, node.lineno, node.end_lineno,
                        ast.get_source_segment(source, node.value)))
    return out


def _comment(line: str) -> str:
    """The comment that ends a line of code ("" if none): the first '#' outside a string."""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line).readline):
            if tok.type == tokenize.COMMENT:
                return tok.string
    except (tokenize.TokenError, IndentationError):
        pass
    return ""


def run_parameters(nb):
    """One parameters cell showing what the run used: the notebook's parameters cell (its
    comments kept) with each value papermill injected in place of the default, and papermill's
    injected cell removed; the page otherwise shows the defaults, then other values below them."""
    nb = copy.deepcopy(nb)
    tags = lambda c: c.get("metadata", {}).get("tags", [])
    injected = next((c for c in nb.cells if "injected-parameters" in tags(c)), None)
    declared = next((c for c in nb.cells if "parameters" in tags(c)), None)
    if injected is None or declared is None:
        return nb
    try:
        values = {name: value for name, _, _, value in _assignments(injected.source)}
        spans = _assignments(declared.source)
    except SyntaxError:
        return nb  # not plain assignments: shown as papermill left them
    lines, out, done = declared.source.splitlines(), [], 0
    for name, first, last, _ in spans:
        out += lines[done:first - 1]
        if name in values:
            comment = _comment(lines[last - 1])
            out.append(f"{name} = {values.pop(name)}" + (f"  {comment}" if comment else ""))
        else:
            out += lines[first - 1:last]
        done = last
    out += lines[done:]
    out += [f"{name} = {value}" for name, value in values.items()]  # injected, not declared: shown too
    declared.source = "# the values this run used (the preset's, in place of the defaults)\n" + "\n".join(out)
    nb.cells = [c for c in nb.cells if c is not injected]
    return nb


def _solution_summaries(nb):
    """Label each folded solution by its first line ('# Solution 2 (seconds): …' -> 'Solution 2')."""
    for cell in nb.cells:
        if is_solution(cell):
            first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
            m = re.match(r"#+\s*(Solution[^(:—\n]*)", first)
            cell.metadata["site_summary"] = m.group(1).strip() if m else "Solution"
    return nb


def math_to_mathml(fragment: str) -> str:
    """TeX ($$…$$ and $…$) in rendered Markdown to MathML, which browsers draw without a script."""
    fragment = DISPLAY_MATH.sub(lambda m: convert(html.unescape(m.group(1)), display="block"), fragment)
    return MATH.sub(lambda m: convert(html.unescape(m.group(1))), fragment)


@functools.lru_cache(maxsize=4)
def _tracked(root: Path) -> frozenset[Path] | None:
    """The files git tracks and the folders that hold them (a folder's listing shows only those:
    no caches, no local runs), or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    files = [root / name for name in out.decode().split("\0") if name]
    return frozenset(files).union(*(f.parents for f in files))


def github_anchors(soup) -> None:
    """Beside each heading's own id (nbconvert keeps its case), the id GitHub gives it
    ('## Quickstart' -> #quickstart), so links written for GitHub work on the site too."""
    for h in soup.find_all(re.compile(r"^h[1-6]$")):
        text = h.get_text().replace("¶", "").strip().lower()
        slug = re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text))
        if slug and slug != h.get("id") and not soup.find(id=slug):
            h.insert(0, soup.new_tag("span", id=slug))


def _soup(markup: str):
    return BeautifulSoup(markup, "html.parser")


class SiteMap:
    """Where each file of the kit lands in the site: the chapters' pages, the pages still to write
    (a page linked from several others is written once) and the files copied as they are."""

    def __init__(self, root: Path, out: Path):
        self.root = root
        self.out = out
        self.pages: dict[PurePosixPath, Page] = {}   # every page written, by target
        self.queue: list[Page] = []
        self.copied: set[PurePosixPath] = set()
        self.chapters: list[Page] = []

    def chapter_target(self, path: Path) -> PurePosixPath | None:
        for page in self.chapters:
            if path.name == page.source.name:
                return page.target
        return None

    def target_of(self, path: Path) -> PurePosixPath:
        """The site path for a file or folder of the kit (relative to the root), queueing a page
        or a copy for it."""
        rel = PurePosixPath(path.as_posix())
        if path.suffix == ".ipynb":
            chapter = self.chapter_target(path)
            if chapter is None:
                raise SiteError(f"{path} is not a chapter of the course")
            return chapter
        if path.as_posix() == "README.md":
            return PurePosixPath("index.html")
        full = self.root / path
        if full.is_dir():
            return self.enqueue(Page(path, rel / "index.html", f"{rel}/", links_from=path, kind="listing"))
        if path.suffix == ".md":
            return self.enqueue(Page(path, rel.with_suffix(".html"), path.name, links_from=path.parent))
        if rel not in self.copied:
            dest = self.out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(full, dest)
            self.copied.add(rel)
        return rel

    def enqueue(self, page: Page) -> PurePosixPath:
        """Plan a page once (a page linked from several others is written once)."""
        if page.target not in self.pages and all(p.target != page.target for p in self.queue):
            self.queue.append(page)
        return page.target

    def rewrite_links(self, markup: str, page: Page) -> str:
        """Every relative href/src of a page, pointed at its place in the site."""
        soup = _soup(markup)
        github_anchors(soup)
        for tag, attr in (("a", "href"), ("img", "src"), ("source", "src")):
            for el in soup.find_all(tag):
                url = el.get(attr)
                if not url or url.startswith(("#", "data:", "mailto:")):
                    continue
                parts = urlsplit(url)
                if parts.scheme or parts.netloc or el.find_parent(class_=("site-nav", "site-pager")):
                    continue  # external, or the site's own navigation (already relative to the page)
                path = Path(os.path.normpath(page.links_from / unquote(parts.path)))
                if path.as_posix().startswith("..") or not (self.root / path).exists():
                    raise SiteError(f"{page.source}: the link {url!r} points to {path}, which is not "
                                    f"in the kit; fix the link in {page.source}")
                target = self.target_of(path)
                el[attr] = _rel(target, page.target) + (f"#{parts.fragment}" if parts.fragment else "")
        return str(soup)


def finished_run(preset: str) -> dict[Path, nbformat.NotebookNode]:
    """The executed notebooks of `preset`'s run, every one of them checked finished before any
    page is made: the site shows only whole runs."""
    runs = runs_dir(preset)
    executed = [runs / nb.name for nb in list_notebooks()]
    missing = [p.name for p in executed if not p.is_file()]
    if not runs.is_dir() and preset not in list_presets():
        raise SiteError(f"unknown preset {preset!r} (no {runs}): the site shows the executed "
                        f"notebooks of a preset's run; presets: {', '.join(list_presets())}")
    if missing:
        raise SiteError(
            f"{runs} lacks the executed notebook(s) {', '.join(missing)}: the site shows a run's "
            f"outputs. Run the course first: python -m llmrec course --preset {preset} "
            f"(make course PRESET={preset})")
    read = {}
    for path in executed:
        try:
            read[path] = nbformat.read(path, as_version=4)
        except (ValueError, OSError) as e:  # cut JSON (a full disk, a copy cut short): not a notebook
            raise SiteError(f"{path} cannot be read as a notebook ({type(e).__name__}: {e}): run it "
                            f"again: python -m llmrec course --preset {preset} --only {path.stem[:2]}") from None
    for path, nb in read.items():
        unfinished = unfinished_cells(nb)
        if unfinished:
            raise SiteError(
                f"{path} did not finish ({len(unfinished)} of its cells never completed, the first "
                f"[{unfinished[0]}]; a run stopped or killed midway): the site shows only finished "
                f"runs. Run it again: python -m llmrec course --preset {preset} --only {path.stem[:2]}")
    return read


class Site:
    """The pages of one preset's run: the chapters (its executed notebooks), README as the home
    page, the workshop, and every page or file they link to (`SiteMap`)."""

    def __init__(self, preset: str, out: Path):
        self.root = repo_root()
        self.preset = preset
        self.out = out
        self.map = SiteMap(self.root, out)
        self.nav: list[Page] = []
        self.notebooks: dict[PurePosixPath, nbformat.NotebookNode] = {}  # chapters, read once

    @functools.cached_property
    def _environment(self):
        return jinja2.Environment(loader=jinja2.FileSystemLoader(str(ASSETS / TEMPLATE)),
                                  autoescape=False, keep_trailing_newline=True)

    @functools.cached_property
    def _exporter(self):
        return HTMLExporter(template_name=TEMPLATE, extra_template_basedirs=[str(ASSETS)],
                            exclude_input_prompt=False)

    # -- page shell ---------------------------------------------------------------------
    def _context(self, page: Page) -> dict:
        def item(p: Page | None):
            return None if p is None else {"href": _rel(p.target, page.target), "label": p.label}

        chapters = self.map.chapters
        index = next((i for i, c in enumerate(chapters) if c.target == page.target), None)
        return {
            "title": TITLE,
            "home": _rel(PurePosixPath("index.html"), page.target),
            "css": _rel(PurePosixPath("assets/site.css"), page.target),
            "nav": [{**item(p), "current": p.target == page.target,
                     "label": p.label.split(":")[0] if p.kind == "chapter" else p.label} for p in self.nav],
            "prev": item(chapters[index - 1]) if index else None,
            "next": item(chapters[index + 1]) if index is not None and index + 1 < len(chapters) else None,
            "footer": f"Built by `python -m llmrec site` from the {self.preset} preset's executed notebooks.",
        }

    def _write(self, page: Page, markup: str) -> None:
        dest = self.out / page.target
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(markup, encoding="utf-8")
        self.map.pages[page.target] = page

    def _markdown_page(self, page: Page, body: str, title: str) -> None:
        body = self.map.rewrite_links(body, page)
        markup = self._environment.get_template("page.html.j2").render(
            site=self._context(page), body=body, page_title=f"{title} · {TITLE}")
        self._write(page, markup)

    # -- the kinds of page ----------------------------------------------------------------
    def chapter(self, page: Page) -> None:
        nb = _solution_summaries(static_widgets(run_parameters(self.notebooks[page.target])))
        nb.metadata["title"] = f"{page.label} · {TITLE}"
        body, _ = self._exporter.from_notebook_node(nb, resources={"site": self._context(page)})
        soup = _soup(body)
        for div in soup.select(".jp-RenderedMarkdown"):
            div.replace_with(_soup(math_to_mathml(str(div))))
        self._write(page, self.map.rewrite_links(str(soup), page))

    def markdown(self, page: Page) -> None:
        text = (self.root / page.source).read_text(encoding="utf-8")
        self._markdown_page(page, math_to_mathml(markdown2html_mistune(text)),
                            _heading(text) or page.source.name)

    def listing(self, page: Page) -> None:
        folder = self.root / page.source
        tracked = _tracked(self.root)
        items = sorted(p for p in folder.iterdir() if not p.name.startswith((".", "__"))
                       and (tracked is None or p in tracked))
        rows = "\n".join(f'<li><a href="{html.escape(p.name + ("/" if p.is_dir() else ""))}">'
                         f"{html.escape(p.name)}{'/' if p.is_dir() else ''}</a></li>" for p in items)
        body = f"<h1><code>{html.escape(page.label)}</code></h1>\n<ul class=\"site-listing\">\n{rows}\n</ul>"
        self._markdown_page(page, body, page.label)

    # -- the whole site -----------------------------------------------------------------
    def _plan(self, run: dict[Path, nbformat.NotebookNode]) -> None:
        """The chapters, in order, and the navigation: home, chapters, workshop."""
        for path, nb in run.items():
            target = PurePosixPath(f"notebooks/{path.stem}.html")
            self.notebooks[target] = nb
            self.map.chapters.append(Page(path.relative_to(self.root), target, _title(nb) or path.stem,
                                          links_from=Path("notebooks"), kind="chapter"))
        home = Page(Path("README.md"), PurePosixPath("index.html"), "Home")
        workshop = Page(Path("docs/WORKSHOP.md"), PurePosixPath("docs/WORKSHOP.html"), "Workshop",
                        links_from=Path("docs"))
        self.nav = [home, *self.map.chapters]
        if (self.root / workshop.source).is_file():
            self.nav.append(workshop)

    def build(self) -> list[Path]:
        self._plan(finished_run(self.preset))
        css = self.out / "assets" / "site.css"
        css.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ASSETS / "site.css", css)
        for page in self.nav:  # home, chapters, workshop; then the pages they link to
            self.map.enqueue(page)
        while self.map.queue:
            page = self.map.queue.pop(0)
            {"chapter": self.chapter, "listing": self.listing, "markdown": self.markdown}[page.kind](page)
        return [self.out / t for t in self.map.pages]


def build(preset: str = "laptop", out: str | Path = "site") -> list[Path]:
    """Write the site under `out` (relative to the kit's root); returns its pages. The folder is
    replaced only when the whole site was built: a failed build leaves the previous one."""
    out = Path(out)
    out = out if out.is_absolute() else repo_root() / out
    if out.resolve() in (repo_root().resolve(), (repo_root() / "notebooks").resolve()):
        raise SiteError(f"--out {out} would overwrite the course itself; choose an empty folder")
    with output_folder(out, "the site") as tmp:  # never deletes what it did not write
        pages = Site(preset, tmp).build()
    return [out / p.relative_to(tmp) for p in pages]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmrec.course.site", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="laptop", help="whose executed notebooks: runs/<preset>/")
    parser.add_argument("--out", default="site", help="the site's folder: new, empty, or one it wrote")
    args = parser.parse_args(argv)
    try:
        pages = build(args.preset, args.out)
    except (SiteError, OutputFolderError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{len(pages)} pages in {pages[0].parent}; open {pages[0]} in a browser")
    return 0


if __name__ == "__main__":
    sys.exit(main())
