#!/usr/bin/env python3
"""test_layout.py - the ctypes struct mirrors of python/libelastic/_capi.py
against the C compiler and the headers, so that a header change can never
silently break Python:

  - sizeof and every field offset printed by tests/struct_layout.c (built by
    tests/CMakeLists.txt as elastic_struct_layout, or compiled here with cc)
    equal ctypes.sizeof and the fields' offsets;
  - the field names of each struct, parsed from include/elastic*.h, equal the
    mirror's and the C program's, in order (a field added where padding was
    would not change sizeof; this catches it).

Run by pytest, or as a script (ctest python_struct_layout):
    python3 python/tests/test_layout.py --bin build/tests/elastic_struct_layout
The C program comes from --bin, ELASTIC_LAYOUT_BIN, build/tests/, or cc.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
try:                                   # the installed package, else the source tree's
    import libelastic  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(ROOT, "python"))

from libelastic import _capi  # noqa: E402


def header_fields() -> Dict[str, List[str]]:
    """struct name -> field names, parsed from the `typedef struct NAME {...} NAME;`
    definitions of include/*.h."""
    out: Dict[str, List[str]] = {}
    inc = os.path.join(ROOT, "include")
    for name in sorted(os.listdir(inc)):
        if not name.endswith(".h"):
            continue
        text = open(os.path.join(inc, name), encoding="utf-8").read()
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        text = re.sub(r"//[^\n]*", "", text)
        for m in re.finditer(r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*(\w+)\s*;", text, re.S):
            fields: List[str] = []
            for decl in m.group(2).split(";"):
                decl = " ".join(decl.split())
                if not decl:
                    continue
                # "int64_t min_len, max_len" / "const char *name" / "char description[256]"
                head, *rest = decl.split(",")
                names = [head.split()[-1]] + [r.strip() for r in rest]
                for n in names:
                    fields.append(re.sub(r"\[.*\]", "", n).lstrip("*").strip())
            out[m.group(3)] = fields
    return out


def find_program(explicit: Optional[str] = None) -> Optional[str]:
    """The layout program: explicit, $ELASTIC_LAYOUT_BIN, build/tests/, or cc."""
    for cand in (explicit, os.environ.get("ELASTIC_LAYOUT_BIN"),
                 os.path.join(ROOT, "build", "tests", "elastic_struct_layout")):
        if cand and os.path.exists(cand):
            return cand
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    exe = os.path.join(tempfile.mkdtemp(prefix="elastic-layout-"), "struct_layout")
    subprocess.run([cc, "-std=c11", "-I", os.path.join(ROOT, "include"), "-o", exe,
                    os.path.join(ROOT, "tests", "struct_layout.c")], check=True)
    return exe


def compare(layout: Dict[str, dict]) -> List[str]:
    """Problems found comparing the C layout and the headers with the mirrors."""
    problems = []
    headers = header_fields()
    public = {n for n in headers if n in _capi.STRUCTS or n in layout}
    for name in sorted(public | set(_capi.STRUCTS) | set(layout)):
        mirror = _capi.STRUCTS.get(name)
        if mirror is None:
            problems.append(f"{name}: a public struct with no ctypes mirror in _capi.STRUCTS")
            continue
        if name not in layout:
            problems.append(f"{name}: tests/struct_layout.c does not print it")
            continue
        c = layout[name]
        names = [f for f, _ in mirror._fields_]
        if ctypes.sizeof(mirror) != c["size"]:
            problems.append(f"{name}: sizeof is {c['size']} in C, {ctypes.sizeof(mirror)} in "
                            "ctypes")
        if list(c["fields"]) != headers.get(name):
            problems.append(f"{name}: tests/struct_layout.c prints fields {list(c['fields'])}, "
                            f"the header declares {headers.get(name)}")
        if names != headers.get(name):
            problems.append(f"{name}: ctypes fields {names}, the header declares "
                            f"{headers.get(name)}")
        for field, offset in c["fields"].items():
            if field in names and getattr(mirror, field).offset != offset:
                problems.append(f"{name}.{field}: offset {offset} in C, "
                                f"{getattr(mirror, field).offset} in ctypes")
    # every typedef'd struct of the headers that is not opaque must be mirrored
    for name in headers:
        if name not in _capi.STRUCTS:
            problems.append(f"{name}: declared in include/ but not mirrored in _capi.STRUCTS")
    return problems


def run_layout(program: str) -> Dict[str, dict]:
    out = subprocess.run([program], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


# ------------------------------------------------------------------ pytest

def test_struct_layout_matches_c() -> None:
    """sizeof, offsets and field names of every public struct equal the mirrors'."""
    import pytest
    program = find_program()
    if program is None:
        pytest.skip("no C compiler and no elastic_struct_layout program")
    problems = compare(run_layout(program))
    assert not problems, "\n".join(problems)


def test_a_stale_mirror_is_caught(monkeypatch) -> None:
    """A mirror that lost a field, or holds one in the wrong place, is reported."""
    import pytest
    program = find_program()
    if program is None:
        pytest.skip("no C compiler and no elastic_struct_layout program")
    layout = run_layout(program)

    class Stale(ctypes.Structure):          # elastic_train_options without `seed`
        _fields_ = [f for f in _capi.TrainOptions._fields_ if f[0] != "seed"]

    class Swapped(ctypes.Structure):        # batch_size and samples_per_user swapped
        _fields_ = [(n, t) for n, t in _capi.TrainOptions._fields_]
        _fields_[6], _fields_[7] = _fields_[7], _fields_[6]

    for bad, want in ((Stale, "sizeof"), (Swapped, "ctypes fields")):
        monkeypatch.setitem(_capi.STRUCTS, "elastic_train_options", bad)
        problems = compare(layout)
        assert any(want in p for p in problems), problems


def test_header_parser_sees_every_struct() -> None:
    """The header parser finds the option structs (it would otherwise check nothing)."""
    headers = header_fields()
    for name in ("elastic_session_options", "elastic_train_options", "elastic_config"):
        assert name in headers and len(headers[name]) >= 6, headers.get(name)
    assert headers["elastic_metrics"] == ["users", "hr10", "hr50", "ndcg10", "ndcg50", "mrr"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", help="the elastic_struct_layout program")
    args = ap.parse_args()
    program = find_program(args.bin)
    if program is None:
        print("FAIL: no layout program and no C compiler")
        return 1
    layout = run_layout(program)
    problems = compare(layout)
    for p in problems:
        print(f"FAIL: {p}")
    for name, c in sorted(layout.items()):
        print(f"{'ok  ' if not any(p.startswith(name) for p in problems) else 'FAIL'} {name}: "
              f"{c['size']} bytes, {len(c['fields'])} fields")
    print(f"{len(layout) - len({p.split(':')[0].split('.')[0] for p in problems})} passed, "
          f"{len({p.split(':')[0].split('.')[0] for p in problems})} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
