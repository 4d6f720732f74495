#!/usr/bin/env python3
"""Every relative link in every tracked Markdown file resolves, and every
mention of CONTRACT.md anywhere in the tracked tree is a path that resolves
to proto/CONTRACT.md.

Links: `[text](target)` outside code fences and inline code. A target with a
scheme (https:, mailto:) is not checked; any other target must name a file or
directory that exists relative to the Markdown file, and its `#fragment`
(or a bare `#fragment`) a heading of that file, as GitHub derives anchors.

CONTRACT.md mentions: in a Markdown link the link rule applies; elsewhere
(code comments, scripts, prose) the mention must be written as a path that
resolves from the repo root or from the file's own directory
(`proto/CONTRACT.md`, `../proto/CONTRACT.md`), so a reader can open it.

Standalone (`python3 ops/check/docs.py`) or from static.py; stdlib only.
"""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "proto" / "CONTRACT.md"
LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
MENTION = re.compile(r"[\w./-]*CONTRACT\.md")


def tracked():
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard"],
                         check=True, capture_output=True, text=True).stdout
    return [ROOT / p for p in out.splitlines() if (ROOT / p).is_file()]


def slug(heading):
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text.replace("`", ""))
    return text.replace(" ", "-")


def prose(text):
    """The lines outside code fences, with inline code blanked, by line number."""
    fence = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
            continue
        if not fence:
            yield number, re.sub(r"`[^`]*`", lambda m: " " * len(m.group(0)), line)


def headings(path):
    """The anchors GitHub gives the headings of `path` (inline code kept)."""
    fence = False
    out, seen = set(), {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
            continue
        m = None if fence else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            out.add(base if base not in seen else f"{base}-{seen[base]}")
            seen[base] = seen.get(base, 0) + 1
    return out


def check_link(md, target):
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
        return None
    path, _, fragment = target.partition("#")
    dest = (md.parent / path).resolve() if path else md
    if not dest.exists():
        return f"{target}: no such file"
    if fragment and dest.suffix == ".md" and fragment not in headings(dest):
        return f"{target}: no heading #{fragment} in {dest.relative_to(ROOT)}"
    return None


def main():
    errors = []
    links = mentions = 0
    for path in tracked():
        rel = path.relative_to(ROOT)
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if path.suffix == ".md":
            for number, line in prose(text):
                for m in list(LINK.finditer(line)) + list(IMAGE.finditer(line)):
                    links += 1
                    problem = check_link(path, m.group(1))
                    if problem:
                        errors.append(f"{rel}:{number}: {problem}")
        if path.resolve() == Path(__file__).resolve():
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for m in MENTION.finditer(line):
                mentions += 1
                name = m.group(0)
                candidates = [ROOT / name, path.parent / name]
                if not any(c.resolve() == CONTRACT for c in candidates):
                    errors.append(f"{rel}:{number}: '{name}' does not resolve to proto/CONTRACT.md "
                                  f"(write it as a path from the repo root or from this file)")
    if errors:
        print("FAIL:", *errors, sep="\n  ")
        return 1
    print(f"docs OK: {links} relative links and {mentions} CONTRACT.md mentions resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
