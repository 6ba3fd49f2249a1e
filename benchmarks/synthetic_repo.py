"""A synthetic monorepo: N files of plausible code (Python, JavaScript, Go, Markdown), reproducible by seed.

Why synthetic: a 100k-file tree is needed to measure how ragbit scales, and no PyPI sdist is that large; this
one is made in about a minute and is the same for the same (files, seed). The code is not meant to run, but it
has what the chunker and BM25 care about: nested packages (~40 files per directory), modules of 40-250 lines
with docstrings, imports, classes with methods and free functions, identifiers in snake_case and CamelCase drawn
from a vocabulary with a Zipf-like skew (so some words are everywhere and most are rare, as in real code).

    python benchmarks/synthetic_repo.py /tmp/synth-100k --files 100000 --seed 1
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

WORDS = """
account action adapter address agent alert allocate archive array asset async attach attempt audit auth backend
backoff balance batch bind block body boost bound bucket buffer build bundle byte cache callback cancel capture
cart chain channel chart check child chunk claim client clock close cluster code column command commit compare
compile config connect consumer container context convert cookie copy count counter create credit cursor daemon
data date debug decode default delay delete delta deploy depth descriptor device digest dispatch document domain
draft driver dump edge email emit encode endpoint engine entry event expire export factor feature fetch field
file filter flag flush folder format frame gateway graph group handler hash header health heap history hook host
image import index inode input invoice item job journal kernel key label layer lease ledger limit link listener
loader lock log lookup manager manifest map marker match member memory merge message meta method metric migrate
mode model module monitor mount node notify number object offset option order origin output owner packet page
parent parse partition patch path payload peer permission pipeline plan plugin policy pool port post prefix
price probe process profile project prompt property proxy publish query queue quota range rate reader record
redirect region registry release remote render replica report request resolve resource response result retry
role route row rule runner sample scale schema scope score search secret segment select sender serial server
session setting shard signal sink slot snapshot socket source span split stack stage state status storage store
stream string subject summary table tag target task template tenant test thread ticket timer token topic trace
track transaction transform tree trigger tuple type unit update upload user validate value vector version view
volume wallet watch window worker write zone
""".split()
VERBS = """get set build make load save find parse read write send fetch apply check update create delete handle
compute resolve merge split render validate normalize encode decode register refresh flush close open start stop
reset emit collect schedule retry""".split()
SENTENCES = ["Return the {a} for the given {b}.", "Keep the {a} in step with the {b} after a {c}.",
             "Raise an error when the {a} has no {b}.", "The {a} is cached per {b}; a {c} invalidates it.",
             "Used by the {a} {b} to decide which {c} to send.", "Why: a {a} without a {b} would lose the {c}."]


class Vocabulary:
    def __init__(self, rng: random.Random):
        self.rng = rng
        weights = [1.0 / (i + 1) ** 0.8 for i in range(len(WORDS))]        # Zipf-like skew
        self.cum_weights = [sum(weights[:i + 1]) for i in range(len(weights))]
        shuffled = WORDS[:]
        rng.shuffle(shuffled)
        self.words = shuffled

    def word(self) -> str:
        return self.rng.choices(self.words, cum_weights=self.cum_weights)[0]

    def snake(self, n: int = 2) -> str:
        return "_".join(self.word() for _ in range(n))

    def camel(self, n: int = 2) -> str:
        return "".join(self.word().capitalize() for _ in range(n))

    def func(self) -> str:
        return f"{self.rng.choice(VERBS)}_{self.snake(self.rng.randint(1, 2))}"

    def sentence(self) -> str:
        return self.rng.choice(SENTENCES).format(a=self.word(), b=self.word(), c=self.word())


def python_body(v: Vocabulary, indent: str, lines: int) -> list[str]:
    rng, out = v.rng, []
    for _ in range(lines):
        kind = rng.random()
        a, b = v.snake(), v.snake(1)
        if kind < 0.3:
            out.append(f"{indent}{a} = {b}.{v.func()}({v.snake(1)}, {rng.randint(0, 999)})")
        elif kind < 0.45:
            out.append(f"{indent}if {a} is None or {b} > {rng.randint(1, 64)}:")
            out.append(f"{indent}    raise {v.camel()}Error(\"{v.sentence()}\")")
        elif kind < 0.6:
            out.append(f"{indent}for {b} in self.{a}:")
            out.append(f"{indent}    {v.snake(1)}.append({v.func()}({b}))")
        elif kind < 0.7:
            out.append(f"{indent}# {v.sentence()}")
        else:
            out.append(f"{indent}{a} += len({b}) * {rng.randint(2, 9)}")
    out.append(f"{indent}return {v.snake()}")
    return out


def python_file(v: Vocabulary) -> str:
    rng = v.rng
    out = [f'"""{v.sentence()}', "", v.sentence() + " " + v.sentence(), '"""',
           "from __future__ import annotations", ""]
    out += [f"from {v.word()}.{v.word()} import {v.camel()}, {v.func()}" for _ in range(rng.randint(1, 5))]
    out += ["", ""]
    for _ in range(rng.randint(1, 5)):
        if rng.random() < 0.5:
            out.append(f"class {v.camel(rng.randint(1, 3))}:")
            out.append(f'    """{v.sentence()}"""')
            for _ in range(rng.randint(1, 6)):
                out.append("")
                out.append(f"    def {v.func()}(self, {v.snake(1)}, {v.snake(1)}=None):")
                out.append(f'        """{v.sentence()}"""')
                out += python_body(v, "        ", rng.randint(2, 12))
        else:
            out.append(f"def {v.func()}({v.snake(1)}, {v.snake(1)}: int = {rng.randint(0, 9)}):")
            out.append(f'    """{v.sentence()}"""')
            out += python_body(v, "    ", rng.randint(3, 18))
        out += ["", ""]
    return "\n".join(out) + "\n"


def js_file(v: Vocabulary) -> str:
    rng, out = v.rng, [f"// {v.sentence()}", f"import {{ {v.camel()} }} from './{v.word()}';", ""]
    for _ in range(rng.randint(1, 6)):
        name = v.camel(2)
        out.append(f"export function {name[0].lower() + name[1:]}({v.word()}, {v.word()}) {{")
        for _ in range(rng.randint(2, 14)):
            out.append(f"  const {v.word()}{v.camel(1)} = {v.word()}.{v.func()}({rng.randint(0, 99)});")
        out += [f"  return {v.word()};", "}", ""]
    return "\n".join(out)


def go_file(v: Vocabulary) -> str:
    rng, out = v.rng, [f"// Package {v.word()}: {v.sentence()}", f"package {v.word()}", "", 'import "fmt"', ""]
    for _ in range(rng.randint(1, 6)):
        out.append(f"// {v.camel(2)} {v.sentence()}")
        out.append(f"func {v.camel(2)}({v.word()} int, {v.word()} string) error {{")
        for _ in range(rng.randint(2, 12)):
            out.append(f"\t{v.word()}{v.camel(1)} := {v.word()}.{v.camel(1)}({rng.randint(0, 99)})")
        out += ['\treturn fmt.Errorf("' + v.sentence() + '")', "}", ""]
    return "\n".join(out)


def markdown_file(v: Vocabulary) -> str:
    rng, out = v.rng, [f"# {v.camel(2)}", ""]
    for _ in range(rng.randint(1, 5)):
        out += [f"## {v.word().capitalize()} {v.word()}", ""]
        out += [" ".join(v.sentence() for _ in range(rng.randint(2, 6))), ""]
    return "\n".join(out)


KINDS = [(".py", python_file, 0.7), (".js", js_file, 0.1), (".go", go_file, 0.1), (".md", markdown_file, 0.1)]


def generate(root: Path, files: int, seed: int = 1, per_dir: int = 40) -> Path:
    """Write `files` files under `root` (made afresh if its marker says another size/seed)."""
    marker = root / ".synthetic"
    tag = f"{files} {seed} {per_dir}"
    if marker.is_file() and marker.read_text() == tag:
        return root
    rng = random.Random(seed)
    v = Vocabulary(rng)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        d = i // per_dir
        rel = Path(f"pkg{d // 2500:02d}", f"{WORDS[d // 50 % len(WORDS)]}{d // 50}", f"{WORDS[d % len(WORDS)]}{d}")
        ext, make, _ = rng.choices(KINDS, [w for _, _, w in KINDS])[0]
        path = root / rel / f"{v.func()}_{i}{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make(v), encoding="utf-8")
    marker.write_text(tag)
    (root / ".gitignore").write_text(".synthetic\n.ragbit/\n")
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    generate(a.root, a.files, a.seed)


if __name__ == "__main__":
    main()
