#!/usr/bin/env python3
"""Check the links of README.md and docs/*.md (ctest: docs_links).

    check-links.py REPO          check REPO's README.md and docs/*.md; non-zero on a problem
    check-links.py --self-test   check a made-up tree with known problems: each must be found

A problem is:
  - a relative link or image, [text](target) or ![alt](target), whose file or folder does not
    exist (relative to the Markdown file; a leading / is the repository);
  - a link to a #fragment of a Markdown file (or of the same file) that names no heading there
    (GitHub's anchors: lowercase, punctuation dropped, spaces to hyphens; an explicit {#id} too);
  - an examples/ path named anywhere in the text (in prose, code spans or code blocks) that does
    not exist in the repository.
Links to http(s), mailto and other schemes are not followed. Stdlib only.
"""
import pathlib
import re
import sys
import tempfile

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXAMPLE_PATH = re.compile(r"(?<![\w./-])(?:\.\./)*(examples/[A-Za-z0-9_./-]*)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def strip_code(text):
    """The text without fenced code blocks and inline code spans (links there are not links)."""
    out, fenced = [], False
    for line in text.split("\n"):
        if re.match(r"^\s*(```|~~~)", line):
            fenced = not fenced
            out.append("")
            continue
        out.append("" if fenced else re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path, cache={}):
    if path not in cache:
        found = set()
        counts = {}
        fenced = False
        for line in path.read_text(encoding="utf-8").split("\n"):
            if re.match(r"^\s*(```|~~~)", line):
                fenced = not fenced
                continue
            m = None if fenced else HEADING.match(line)
            if not m:
                continue
            title = m.group(2)
            explicit = re.search(r"\{#([\w-]+)\}\s*$", title)
            if explicit:
                found.add(explicit.group(1))
                title = title[: explicit.start()]
            base = slug(title)
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
        cache[path] = found
    return cache[path]


def check(repo):
    repo = pathlib.Path(repo).resolve()
    files = [repo / "README.md"] + sorted((repo / "docs").glob("*.md"))
    problems = []
    for md in files:
        if not md.exists():
            problems.append(f"{md.relative_to(repo)}: missing")
            continue
        text = md.read_text(encoding="utf-8")
        rel = md.relative_to(repo)
        prose = strip_code(text)
        for lineno, line in enumerate(prose.split("\n"), 1):
            for m in LINK.finditer(line):
                target = m.group(1)
                if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
                    continue  # http:, https:, mailto:, ...
                path_part, _, fragment = target.partition("#")
                if path_part:
                    base = repo if path_part.startswith("/") else md.parent
                    dest = (base / path_part.lstrip("/")).resolve()
                    if not dest.exists():
                        problems.append(f"{rel}:{lineno}: dead link: {target}")
                        continue
                else:
                    dest = md
                if fragment and dest.suffix == ".md" and dest.is_file():
                    if fragment not in anchors(dest):
                        problems.append(f"{rel}:{lineno}: no heading for #{fragment} in "
                                        f"{dest.relative_to(repo) if dest.is_relative_to(repo) else dest}")
        for lineno, line in enumerate(text.split("\n"), 1):
            for m in EXAMPLE_PATH.finditer(line):
                path = m.group(1).rstrip(".")
                if path in ("examples", "examples/"):
                    continue
                if not (repo / path).exists():
                    problems.append(f"{rel}:{lineno}: {path} does not exist")
    return files, problems


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        (root / "docs").mkdir()
        (root / "examples" / "real").mkdir(parents=True)
        (root / "examples" / "real" / "main.cpp").write_text("int main() {}\n")
        (root / "docs" / "pic.png").write_bytes(b"")
        (root / "README.md").write_text(
            "# Title\n\n## A `code` heading (x)\n\n"
            "[ok](docs/guide.md) [ok anchor](docs/guide.md#second-part) ![ok](docs/pic.png)\n"
            "[ok self](#a-code-heading-x) [web](https://example.org/missing) [ok dir](examples/real/)\n"
            "[dead](docs/nothing.md)\n"
            "`[not a link](nowhere.md)` and examples/real/main.cpp and `examples/real/`.\n"
            "```\n[in code](nowhere.md)\nexamples/ghost/main.cpp\n```\n")
        (root / "docs" / "guide.md").write_text(
            "# Guide\n\n## Second part\n\n[back](../README.md#title) [bad anchor](../README.md#nope)\n"
            "![dead image](missing.png) see examples/missing/ and [ok](../examples/real/main.cpp).\n")
        _, problems = check(root)
    expected = [
        "README.md:7: dead link: docs/nothing.md",
        "README.md:11: examples/ghost/main.cpp does not exist",
        "docs/guide.md:5: no heading for #nope in README.md",
        "docs/guide.md:6: dead link: missing.png",
        "docs/guide.md:6: examples/missing/ does not exist",
    ]
    if sorted(problems) != sorted(expected):
        print("self-test FAILED\n  found:\n    " + "\n    ".join(problems) + "\n  expected:\n    "
              + "\n    ".join(expected))
        return 1
    print(f"self-test passed: {len(expected)} problems found, as planted, and nothing else")
    return 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    files, problems = check(sys.argv[1])
    for p in problems:
        print(p)
    print(f"checked {len(files)} Markdown files: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
