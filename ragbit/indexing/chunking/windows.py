"""Line windows: the fallback chunker, and the tool every other strategy uses to cut a span that is too big.

A window grows line by line while the running token estimate fits, is then checked with the real counter and
shrunk until it fits, and the next window starts `overlap` lines before the previous one ended (so a statement
cut at a window edge is still seen whole by one of the two windows).
"""
from __future__ import annotations

from ragbit.indexing.chunking.budget import Budget, Piece
from ragbit.indexing.chunking.chunk import make_embed_text


def span_pieces(budget: Budget, start: int, end: int, scope: str, overlap: int,
                max_lines: int | None = None) -> list[Piece]:
    """One mergeable piece for a span that fits (blank edges trimmed), or windows when it does not."""
    trimmed = budget.trim(start, end)
    if trimmed is None:
        return []
    start, end = trimmed
    too_long = max_lines is not None and end - start + 1 > max_lines
    if not too_long and budget.fits(start, end, scope):
        return [Piece(start, end, scope)]
    return split_windows(budget, start, end, scope, overlap, max_lines)


def split_windows(budget: Budget, start: int, end: int, scope: str, overlap: int,
                  max_lines: int | None = None) -> list[Piece]:
    """Cover the non-blank lines of `start..end` with overlapping windows that each fit the budget."""
    trimmed = budget.trim(start, end)
    if trimmed is None:
        return []
    start, last = trimmed
    limit = max_lines if max_lines and max_lines > 0 else last - start + 1
    pieces: list[Piece] = []
    i = start
    while i <= last:
        while i <= last and budget.is_blank(i):
            i += 1
        if i > last:
            break
        # grow by estimate, then verify with the real counter
        j = budget.grow(i, last, scope, limit)
        if not budget.fits_exact(i, j, scope):     # estimate was optimistic: bisect for the last line that fits
            good, lo, hi = i - 1, i, j - 1
            while lo <= hi:
                mid = (lo + hi) // 2
                if budget.fits_exact(i, mid, scope):
                    good, lo = mid, mid + 1
                else:
                    hi = mid - 1
            if good < i:                           # one line alone is over budget: cut it by characters
                pieces.extend(split_line(budget, i, scope))
                i += 1
                continue
            j = good
        while budget.is_blank(j):
            j -= 1
        pieces.append(Piece(i, j, scope, mergeable=False, exact=True))
        if j >= last:
            break
        size = j - i + 1
        i = j + 1 - overlap if size > 2 * overlap else j + 1
    return pieces


def split_line(budget: Budget, row: int, scope: str) -> list[Piece]:
    """Slices of one over-long line, each fitting the budget (the only place a chunk is not whole lines)."""
    line = budget.lines[row]
    pieces: list[Piece] = []
    pos = 0
    while pos < len(line):
        # start from a proportional guess, shrink by 10 % until it fits (at least one character per slice)
        room = max(1, budget.max_tokens - budget.header_cost(scope))
        total = max(1, budget.count(line[pos:]) - budget.overhead)
        n = max(1, min(len(line) - pos, (len(line) - pos) * room // total))
        while n > 1 and budget.count(make_embed_text(budget.path, scope, line[pos:pos + n])) > budget.max_tokens:
            n = max(1, n * 9 // 10)
        pieces.append(Piece(row, row, scope, mergeable=False, text=line[pos:pos + n], exact=True))
        pos += n
    return pieces


def window_pieces(budget: Budget, window_lines: int, overlap_lines: int) -> list[Piece]:
    """The whole file as windows of at most `window_lines` lines (plain text, config files, unknown code)."""
    if not budget.lines:
        return []
    return split_windows(budget, 0, len(budget.lines) - 1, "", overlap_lines, window_lines)
