"""Every image a notebook's markdown shows exists in the repository, and the course's diagrams
are well-formed SVG (a broken link or file shows as nothing in Jupyter and on GitHub)."""

import json
import re
import xml.dom.minidom

from llmrec.paths import notebooks_dir, repo_root

IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def _images():
    for path in sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                for target in IMAGE.findall("".join(cell["source"])):
                    yield path.stem, target


def test_every_image_in_the_notebooks_exists():
    shown = list(_images())
    assert {t.rsplit("/", 1)[-1] for _, t in shown} >= {
        "rating_token_head.svg", "content_based_recommender.svg", "frozen_cached_tuned.svg"}
    for notebook, target in shown:
        assert not target.startswith(("http:", "https:")), f"{notebook}: {target} needs the network"
        assert (notebooks_dir() / target).resolve().is_file(), f"{notebook}: {target} does not exist"


def test_diagrams_are_well_formed_svg_with_a_title():
    for svg in sorted((repo_root() / "docs" / "diagrams").glob("*.svg")):
        doc = xml.dom.minidom.parse(str(svg))
        assert doc.documentElement.tagName == "svg", svg
        assert doc.getElementsByTagName("title"), f"{svg.name}: a <title> says what it shows"
