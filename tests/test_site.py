"""The course site (python -m llmrec site), built from the smoke run and looked at in a real
browser: Debian's chromium, driven headless by Playwright, the site served over HTTP as a static
host would. Every page loads without a console error, a failed request or a broken image; every
internal link leads to a file of the site (and to its anchor); a folded solution opens on a click.
Screenshots of the home page and of a chapter go to runs/smoke/site-screenshots/ for a person.

Where chromium is missing, the set-up installs it (apt-get); where it cannot, the tests skip with
the reason, except under CI (CI or LLMREC_REQUIRE_BROWSER set), where they fail."""

import functools
import http.server
import os
import re
import shutil
import subprocess
import threading
from urllib.parse import unquote, urljoin, urlsplit

import pytest

from llmrec.course import site
from llmrec.paths import runs_dir

pytestmark = pytest.mark.notebook
SCREENSHOTS = runs_dir("smoke") / "site-screenshots"


def _install_chromium() -> str | None:
    """The path of a chromium binary, installing Debian's package if none is there."""
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    if shutil.which("apt-get") and hasattr(os, "geteuid"):
        sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
        if sudo is not None:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
                if subprocess.run([*sudo, *cmd], env=env, capture_output=True, check=False,
                                  timeout=900).returncode:
                    break
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def browser():
    required = bool(os.environ.get("CI") or os.environ.get("LLMREC_REQUIRE_BROWSER"))
    path = _install_chromium()
    why = None
    if path is None:
        why = "chromium is not installed and apt-get could not install it (no root, or no apt)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = why or "playwright is not installed: pip install -e '.[dev]'"
    if why:
        if required:
            pytest.fail(f"the site's browser test cannot run under CI: {why}")
        pytest.skip(f"no browser test of the site: {why}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def built(smoke_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    pages = site.build("smoke", out)
    return out, pages


@pytest.fixture(scope="module")
def served(built):
    """The site over HTTP on a free local port, as a static host serves it."""
    out, _ = built

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(out)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_the_site_has_every_chapter_and_no_cdn_script(built):
    out, pages = built
    names = {p.relative_to(out).as_posix() for p in pages}
    chapters = sorted(n for n in names if n.startswith("notebooks/"))
    assert chapters == [f"notebooks/{p.stem}.html" for p in sorted(runs_dir("smoke").glob("[0-9][0-9]_*.ipynb"))]
    assert {"index.html", "docs/WORKSHOP.html", "notebooks/07_report.html"} <= names
    for page in pages:
        text = page.read_text()
        assert not re.search(r"<script[^>]+src=\"https?://", text), page  # nothing from a CDN
        assert "widget-view+json" not in text and "widget-state+json" not in text, page
    chapter = (out / "notebooks" / "02_baselines.html").read_text()
    assert chapter.count('<details class="solution">') >= 3
    assert "<math" in chapter and "\\hat r" not in chapter  # TeX drawn as MathML


def test_a_missing_run_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    with pytest.raises(site.SiteError, match=r"unknown preset 'nosuch' .*presets: laptop, paper, smoke"):
        site.build("nosuch", tmp_path / "site")
    monkeypatch.setattr(site, "runs_dir", lambda preset: tmp_path / "runs" / preset)
    (tmp_path / "runs" / "paper").mkdir(parents=True)
    with pytest.raises(site.SiteError, match=r"lacks the executed notebook\(s\) 00_setup_check.ipynb, .*"
                                             r"python -m llmrec course --preset paper"):
        site.build("paper", tmp_path / "site")
    # nothing half-written: neither the site nor a temporary folder beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def _internal_links(page, base: str) -> list[str]:
    hrefs = page.eval_on_selector_all("a[href], img[src]", "els => els.map(e => e.href || e.src)")
    return [h for h in hrefs if h.startswith(base)]


def test_every_page_in_a_browser(browser, built, served):
    out, pages = built
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    anchors: dict[str, set[str]] = {}
    links: dict[str, list[str]] = {}
    for html_file in pages:
        url = urljoin(served, html_file.relative_to(out).as_posix())
        page.goto(url, wait_until="load")
        broken = page.eval_on_selector_all("img", "imgs => imgs.filter(i => !i.complete || i.naturalWidth === 0)"
                                                  ".map(i => i.src)")
        problems += [f"{url}: image not shown: {src}" for src in broken]
        anchors[url] = set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
        links[url] = _internal_links(page, served)
        assert page.locator("header.site-nav a").count() >= 9, url  # home + 8 chapters (+ workshop)
    for url, hrefs in links.items():
        for href in hrefs:
            parts = urlsplit(href)
            path = out / unquote(parts.path).lstrip("/")
            if path.is_dir():
                path = path / "index.html"
            if not path.is_file():
                problems.append(f"{url}: broken link {href}")
            elif parts.fragment and path.suffix == ".html":
                target = urljoin(served, path.relative_to(out).as_posix())
                # as a browser looks: the fragment as written, then percent-decoded
                if target in anchors and not {parts.fragment, unquote(parts.fragment)} & anchors[target]:
                    problems.append(f"{url}: link to a missing anchor {href}")
    assert not problems, "\n".join(problems[:30])

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(served + "index.html")
    page.screenshot(path=str(SCREENSHOTS / "home.png"))
    page.goto(served + "notebooks/02_baselines.html")
    page.screenshot(path=str(SCREENSHOTS / "chapter.png"))
    context.close()


def test_a_solution_opens_on_a_click(browser, served):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(served + "notebooks/02_baselines.html")
    solution = page.locator("details.solution").first
    assert solution.get_attribute("open") is None
    code = solution.locator(".jp-InputArea").first
    assert not code.is_visible()  # folded: the answer is not on screen
    solution.locator("summary").click()
    assert solution.get_attribute("open") is not None
    assert code.is_visible() and "Solution" in solution.locator("summary").inner_text()
    solution.scroll_into_view_if_needed()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "solution-open.png"))
    page.close()


def test_out_refuses_a_folder_of_the_users_before_any_work(tmp_path):
    from llmrec.io import OutputFolderError

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match="notes.txt"):
        site.build("smoke", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert site.main(["--preset", "smoke", "--out", str(tmp_path)]) == 1


def test_a_notebook_killed_midway_is_not_published(tmp_path, monkeypatch):
    # runs/<preset>/05 with 8 of its cells run (a SIGKILL): refused with the notebook and the fix
    import shutil

    import nbformat

    from llmrec.paths import list_notebooks

    runs = tmp_path / "runs" / "killed"
    runs.mkdir(parents=True)
    for nb_path in list_notebooks():
        nb = nbformat.read(nb_path, as_version=4)
        for k, cell in enumerate(nb.cells):
            done = not (nb_path.stem.startswith("05") and k >= 8)
            cell.metadata["papermill"] = {"status": "completed" if done else "pending"}
        nbformat.write(nb, runs / nb_path.name)
    monkeypatch.setattr(site, "runs_dir", lambda preset: tmp_path / "runs" / preset)
    with pytest.raises(site.SiteError, match=r"05_data_efficiency.ipynb did not finish .*--only 05"):
        site.build("killed", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    shutil.rmtree(runs)


def test_a_chapter_shows_the_parameters_the_run_used_once():
    import nbformat

    from llmrec.course.site import run_parameters

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('PRESET = "laptop"            # smoke | laptop | paper\nLINE = "{name}: {rating}"  # one line\nSEED = 0', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('# Parameters\nPRESET = "smoke"\nSEED = 3\nEXTRA = 1\n', metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("print(PRESET)")])
    out = run_parameters(nb)
    assert len(out.cells) == 2  # the injected cell is folded into the parameters cell
    source = out.cells[0].source
    assert 'PRESET = "smoke"  # smoke | laptop | paper' in source and "SEED = 3" in source
    assert 'LINE = "{name}: {rating}"  # one line' in source and "EXTRA = 1" in source
    assert "laptop\"" not in source.split("\n", 1)[1]  # the default is gone
    assert len(nb.cells) == 3  # the run's own notebook is not changed
    # values as papermill (and black) may write them: over several lines, with '#' inside a string
    nb.cells[0].source = ('DATA_PATHS = {}              # custom: {"ratings_path": file}\n'
                          'LINE = "{name}: {rating}"  # one line\nSEED = 0')
    nb.cells[1].source = ('# Parameters\nDATA_PATHS = {\n    "ratings_path": "a  # b.tsv",\n    "sep": "\\t",\n}\n'
                          'LINE = "# {name}  #: {rating}"\n')
    source = run_parameters(nb).cells[0].source
    assert 'DATA_PATHS = {\n    "ratings_path": "a  # b.tsv",\n    "sep": "\\t",\n}  # custom: {"ratings_path": file}' in source
    assert 'LINE = "# {name}  #: {rating}"  # one line' in source and "SEED = 0" in source
    compile(source, "cell", "exec")  # still Python


def test_finished_bars_are_dropped_and_live_ones_drawn_from_their_state():
    import nbformat

    from llmrec.course.site import WIDGET_STATE, WIDGET_VIEW, static_widgets

    def view(model_id):
        return nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": model_id},
                                                            "text/plain": "predicting:   0%|  | 0/2"})

    state = {
        "box": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_label", "IPY_MODEL_bar"], "layout": "IPY_MODEL_shown"}},
        "label": {"model_name": "HTMLModel", "state": {"value": "predicting: 100%"}},
        "bar": {"model_name": "FloatProgressModel", "state": {"value": 2, "max": 2}},
        "shown": {"model_name": "LayoutModel", "state": {"visibility": None}},
        "gone": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_label"], "layout": "IPY_MODEL_hid"}},
        "hid": {"model_name": "LayoutModel", "state": {"visibility": "hidden"}},
    }
    cell = nbformat.v4.new_code_cell("x", outputs=[view("box"), view("gone"), view("closed"),
                                                   nbformat.v4.new_output("stream", text="done\n")])
    nb = nbformat.v4.new_notebook(cells=[cell], metadata={"widgets": {WIDGET_STATE: {"state": state}}})
    outputs = static_widgets(nb).cells[0].outputs
    assert len(outputs) == 2 and outputs[1]["text"] == "done\n"
    assert '<progress value="2" max="2">' in outputs[0]["data"]["text/html"] and "100%" in outputs[0]["data"]["text/html"]
    assert "0/2" not in str(outputs)  # no bar frozen at its first state
