#!/usr/bin/env python3
"""Chooses a small corpus for one fuzz target: the named inputs (seed-*, regression-*: always
kept), plus, greedily, the inputs that add most coverage edges, up to MAX_FILES in all.

libFuzzer's own -merge/-set_cover_merge keep every input that adds a *feature* (edge hit-count
buckets, comparison operands): hundreds of files for a parser. Even covering every edge takes
~200 inputs for a head parser, most of them adding one edge each (monomorphised generic code:
sorting, formatting, vector growth). The first few dozen greedy picks reach ~90% of the edges,
and a few dozen files is what fits in the repository: the script says what fraction it kept.

usage: fuzz_cover.py FUZZ_BINARY CANDIDATE_DIR OUT_DIR

Two passes with the target binary (libFuzzer's merge mode runs inputs without fuzzing):
 1. -merge=1 over all candidates: the control file says which inputs add anything at all (it
    lists only the edges an input reached first, so it cannot drive a set cover itself);
 2. -merge=1 over each of those alone: its full edge set.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

# Most files kept per target (named ones included); tests/fuzz_corpus.rs checks the bound.
MAX_FILES = 48


def merge_edges(binary, inputs_dir, work):
    """Runs libFuzzer's merge over `inputs_dir`; returns (paths, {index: edges first reached})."""
    control = os.path.join(work, "control")
    empty = tempfile.mkdtemp(dir=work)
    subprocess.run(
        [binary, "-merge=1", f"-merge_control_file={control}", "-max_len=4096", empty, inputs_dir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    with open(control) as f:
        lines = f.read().splitlines()
    count = int(lines[0])
    paths = lines[2 : 2 + count]
    edges = {i: set() for i in range(count)}
    for line in lines[2 + count :]:
        parts = line.split()
        if parts and parts[0] == "COV":
            edges[int(parts[1])] = set(map(int, parts[2:]))
    os.remove(control)
    return paths, edges


def is_named(path):
    return os.path.basename(path).startswith(("seed-", "regression-"))


def main():
    binary, candidates, out_dir = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as work:
        paths, first = merge_edges(binary, candidates, work)
        useful = [p for i, p in enumerate(paths) if first[i] or is_named(p)]
        edges = {}
        for path in useful:
            alone = tempfile.mkdtemp(dir=work)
            os.symlink(os.path.abspath(path), os.path.join(alone, "input"))
            _, cov = merge_edges(binary, alone, work)
            edges[path] = cov.get(0, set())
    chosen = [p for p in useful if is_named(p)]
    covered = set().union(*(edges[p] for p in chosen)) if chosen else set()
    rest = [p for p in useful if not is_named(p)]
    while True:
        # The input adding most uncovered edges; the smaller one on a tie (easier to read).
        best = max(
            rest,
            key=lambda p: (len(edges[p] - covered), -os.path.getsize(p)),
            default=None,
        )
        if best is None or not edges[best] - covered or len(chosen) >= MAX_FILES:
            break
        chosen.append(best)
        covered |= edges[best]
        rest.remove(best)
    os.makedirs(out_dir, exist_ok=True)
    names = set()
    for path in chosen:
        if is_named(path):
            name = os.path.basename(path)
        else:
            with open(path, "rb") as f:
                name = "cov-" + hashlib.sha1(f.read()).hexdigest()[:12]
        if name not in names:
            names.add(name)
            shutil.copyfile(path, os.path.join(out_dir, name))
    reached = set().union(*edges.values()) if edges else set()
    print(f"{len(names)} files reach {len(covered)} of the {len(reached)} edges the candidates reach")


if __name__ == "__main__":
    main()
