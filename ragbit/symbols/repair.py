"""One repair pass: the definitions of the names an answer should have used, for a second generation.

When the grounding check finds an unknown name with a close defined one (`Session.fetch_all`, did you mean
`Session.fetch`?), the model most likely did not see `Session.fetch`. The repair pass puts that definition at
the head of the retrieved hits and generates once more, within the same token budget (the packer makes room
by leaving out the lowest-ranked hits).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ragbit.search.searcher import Hit
from ragbit.symbols.grounding import Grounding
from ragbit.symbols.table import SymbolTable

MAX_REPAIRS = 3                 # definitions added at most
MAX_DEFINITION_LINES = 120      # a longer definition is cut to its first lines (the packer may still drop it)


@dataclass
class Repair:
    """What a repair pass did: which names it replaced by which definitions, and the first answer."""
    names: list[str] = field(default_factory=list)          # unknown names of the first answer
    added: list[str] = field(default_factory=list)          # "Session.fetch (path:start-end)" put in the context
    first_answer: str = ""

    def to_json(self) -> dict:
        return {"names": self.names, "added": self.added, "first_answer": self.first_answer}

    def note(self) -> str:
        return (f"repair: the answer named {', '.join(self.names)}, not defined here; answering once more with "
                f"{', '.join(self.added)} in the context")


def repair_hits(grounding: Grounding, table: SymbolTable, repo: Path) -> tuple[list[Hit], Repair]:
    """Hits holding the definitions suggested for the unknown names (none when there is nothing to repair)."""
    hits: list[Hit] = []
    repair = Repair()
    seen: set[tuple[str, int]] = set()
    for finding in grounding.findings:
        if finding.status != "unknown" or not finding.suggestion or finding.kind == "path" \
                or len(hits) >= MAX_REPAIRS:
            continue
        symbols = table.resolve(finding.suggestion)
        if not symbols or (symbols[0].path, symbols[0].start_line) in seen:
            continue
        s = symbols[0]
        try:
            lines = (Path(repo) / s.path).read_text(encoding="utf-8", errors="replace").split("\n")
        except OSError:
            continue
        end = min(s.end_line, s.start_line + MAX_DEFINITION_LINES - 1, len(lines))
        if end < s.start_line:
            continue
        seen.add((s.path, s.start_line))
        hits.append(Hit(path=s.path, start_line=s.start_line, end_line=end, scope=s.name, language="",
                        score=1.0, text="\n".join(lines[s.start_line - 1:end]), rank=0))
        repair.names.append(finding.name)
        repair.added.append(f"{finding.suggestion} ({s.path}:{s.start_line}-{end})")
    return hits, repair
