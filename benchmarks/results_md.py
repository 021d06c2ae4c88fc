"""benchmarks/RESULTS.md is assembled from sections that different commands refresh on their own:
spine.py writes the head of the file, stream.py and scripts/pi-check.sh their marked sections. Each
command replaces only its own section and keeps the others."""

from __future__ import annotations

import re
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
_SECTION = re.compile(r"<!-- (\w+) BEGIN -->.*?<!-- \1 END -->", re.S)


def marked_sections(text: str) -> list[str]:
    return [m.group(0) for m in _SECTION.finditer(text)]


def write_section(name: str, body: str, path: Path = RESULTS) -> None:
    from edgekd.io import write_bytes_atomic

    block = f"<!-- {name} BEGIN -->\n{body.strip()}\n<!-- {name} END -->"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"<!-- {name} BEGIN -->.*?<!-- {name} END -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    write_bytes_atomic(path, text.encode())


def publish(name: str, text: str) -> None:
    """How every benchmark ends: its section of RESULTS.md replaced by TEXT, and TEXT printed."""
    write_section(name, text)
    print(text)


KEPT_NOTE = "(Kept from an earlier run whose saved results are not on this machine; the command above made them.)"


def kept_subsection(section: str, heading: str, path: Path = RESULTS) -> str | None:
    """The `### heading` subsection of marked section `section` as the file has it now, marked as kept: a
    benchmark that refreshes one of its subsections must not erase another whose saved numbers (benchmarks/out,
    not in git) are not on this machine. None if there is no such subsection."""
    begin = f"<!-- {section} BEGIN -->"
    found = [m for m in marked_sections(path.read_text()) if m.startswith(begin)] if path.exists() else []
    match = (
        re.search(rf"^### {re.escape(heading)}\n.*?(?=^### |<!-- {section} END -->)", found[0], re.S | re.M)
        if found
        else None
    )
    if not match:
        return None
    text = match.group(0).rstrip()
    return text if KEPT_NOTE in text else f"{text}\n\n{KEPT_NOTE}"


def demote_headings(markdown: str) -> str:
    """A report's own '# Title' becomes '## Title' inside RESULTS.md (code blocks untouched)."""
    out, in_code = [], False
    for line in markdown.splitlines():
        in_code ^= line.startswith("```")
        out.append("#" + line if line.startswith("#") and not in_code else line)
    return "\n".join(out)


if __name__ == "__main__":  # python benchmarks/results_md.py NAME FILE: put FILE's report in section NAME
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    write_section(sys.argv[1], demote_headings(Path(sys.argv[2]).read_text()))
