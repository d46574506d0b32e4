"""The documentation: README.md is a short front page, docs/ builds with `mkdocs build --strict`, and
every relative link of the README and of docs/ resolves (file and anchor) inside the repository."""
from __future__ import annotations

import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FRONT_PAGE_MAX_LINES = 250  # issue 27: the README is a front page; reference material goes to docs/

LINK = re.compile(r"(?<!!)\[(?:[^\]`]|`[^`]*`)*\]\(([^)\s]+)\)")  # inline links [text](target)
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def _prose(text: str) -> str:
    """The text outside fenced and indented code blocks, and outside inline code spans."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    ") and not line.lstrip().startswith(("-", "*")):
            continue
        out.append(re.sub(r"`[^`]*`", "``", line))
    return "\n".join(out)


def _headings(text: str) -> list[str]:
    """The text of each Markdown heading outside code blocks, in order."""
    out = []
    for line in _prose(text).splitlines():
        m = HEADING.match(line)
        if m:
            out.append(m.group(2))
    return out


def _raw_headings(text: str) -> list[str]:
    """Like _headings, but with inline code kept (slugs are made from the code's text)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        m = None if fenced else HEADING.match(line)
        if m:
            out.append(m.group(2))
    return out


def _dedupe(slugs: list[str]) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for s in slugs:
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}" if s else f"-{n}")
        seen[s] = n + 1
    return out


def github_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces to hyphens."""
    slugs = []
    for h in _raw_headings(text):
        h = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", h).replace("`", "").lower()
        slugs.append(re.sub(r"[^\w\- ]", "", h).replace(" ", "-"))
    return _dedupe(slugs)


def mkdocs_anchors(text: str) -> set[str]:
    """The anchors MkDocs (Python-Markdown's toc slugify) gives a page's headings."""
    slugs = []
    for h in _raw_headings(text):
        h = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", h).replace("`", "")
        h = unicodedata.normalize("NFKD", h).encode("ascii", "ignore").decode()
        slugs.append(re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", h).strip().lower()))
    return _dedupe(slugs)


def link_problems(page: Path) -> list[str]:
    """Every relative link of `page` that leaves the repository, names a missing file or a missing anchor."""
    problems = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not a repository file
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_relative_to(ROOT):
            problems.append(f"{page.name}: {target} points outside the repository")
            continue
        if not dest.exists():
            problems.append(f"{page.name}: {target}: no such file")
            continue
        if anchor:
            text = dest.read_text()
            anchors = github_anchors(text)
            if dest.parent == DOCS:  # a docs page is read on GitHub and in the MkDocs site
                anchors &= mkdocs_anchors(text)
            if anchor not in anchors:
                problems.append(f"{page.name}: {target}: no heading with anchor #{anchor} in {dest.name}")
    return problems


def test_readme_is_a_short_front_page_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) < FRONT_PAGE_MAX_LINES, "README.md: move reference material to docs/"
    top = text.splitlines()[:5]
    assert any(line.strip().startswith("pip install -e '.[dev]' && albench run") for line in top)
    assert any(line.strip().startswith("pytest ") or line.strip() == "pytest" for line in top)


def test_readme_links_resolve_to_files_and_anchors():
    assert link_problems(README) == []


def test_readme_links_every_docs_page():
    text = README.read_text()
    for page in PAGES:
        assert f"](docs/{page.name}" in text, f"README.md has no link to docs/{page.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_docs_page_links_resolve_inside_the_repository(page):
    assert link_problems(page) == []


def test_no_page_points_to_files_users_do_not_have():
    """../shared holds the developers' reference copies; a user's checkout has no such folder."""
    for page in [README, *PAGES]:
        assert "../shared" not in page.read_text(), f"{page.name} points to ../shared"


def test_link_checker_catches_bad_targets(tmp_path, monkeypatch):
    """The checker itself: a missing file, a missing anchor and a path outside the repository."""
    page = DOCS / "configs.md"
    bad = tmp_path / "bad.md"
    bad.write_text("[a](nope.md) [b](configs.md#no-such-heading) [c](../../../etc/passwd) [d](#here)\n"
                   "[ok](configs.md#configs) [web](https://example.org)\n\n## Here\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "configs.md").write_text(page.read_text())
    problems = link_problems(bad)
    assert len(problems) == 3, problems
    assert "nope.md: no such file" in problems[0]
    assert "#no-such-heading" in problems[1]
    assert "outside the repository" in problems[2]


def test_anchor_rules_match_headings_with_punctuation():
    text = "# Cold start: TypiClust, ProbCover and a SimCLR representation\n## Speed, CPU\n## Speed, CPU\n"
    assert github_anchors(text) == mkdocs_anchors(text) == {
        "cold-start-typiclust-probcover-and-a-simclr-representation", "speed-cpu", "speed-cpu-1"}


def test_mkdocs_nav_lists_every_docs_page():
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]

    def files(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for n in node:
                yield from files(n)
        elif isinstance(node, dict):
            for n in node.values():
                yield from files(n)

    assert sorted(files(nav)) == sorted(p.name for p in PAGES)


def test_readme_quickstart_table_is_the_results_page_table():
    """The front page repeats the quickstart table; it must be the measured one in docs/results.md."""
    def table(text: str, after: str) -> list[str]:
        lines = text[text.index(after):].splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("| strategy |"))
        end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
        return lines[start:end]

    mark = "`albench run` as packaged"
    readme = table(README.read_text(), mark)
    import yaml

    from albench.config import quickstart_path

    packaged = [e if isinstance(e, str) else e.get("label") or e["name"]
                for e in yaml.safe_load(quickstart_path().read_text())["strategies"]]
    # header, rule, then one row per strategy of the packaged quickstart (every built-in one), in its order
    assert [row.split("|")[1].strip() for row in readme[2:]] == packaged
    assert readme == table((DOCS / "results.md").read_text(), mark)


def test_mkdocs_build_strict(tmp_path):
    """`mkdocs build --strict` fails on any warning: a page outside the nav, a broken link or anchor."""
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "WARNING" not in out, out
    assert (tmp_path / "site" / "strategies" / "index.html").exists()
