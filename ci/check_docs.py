#!/usr/bin/env python3
"""check_docs.py - the documentation of the repository must be self-contained.

  python3 ci/check_docs.py [REPO_ROOT]      (default: the parent of ci/)

Checks, in README.md and every docs/**/*.md:
  - every relative Markdown link or image, [text](path) or [label]: path,
    points at a file or folder of the repository (resolved from the Markdown
    file's folder; "#anchor" parts are stripped, http(s)/mailto links and
    anchor-only links are skipped);
  - every path in backticks that names something in the repository (it
    contains a "/" and starts with a top-level entry of the repository, "./"
    or "../"; globs such as docs/training/ml1m_*.log must match something)
    exists; such a path may be written from the repository root or from the
    Markdown file's folder. Paths under ../shared/data (the data sets beside
    a checkout) are allowed; anything else outside the repository is not.
And in every tracked file (git ls-files) but this one:
  - no path into the specification folder beside a checkout (the shared
    folder's spec/) occurs: the model specification lives in docs/spec/.

Uses the Python standard library only. Prints one line per problem and exits
with 1, or prints "docs: all links resolve" and exits with 0. Run by ctest as
docs_links.
"""
import fnmatch
import glob
import os
import re
import subprocess
import sys

FORBIDDEN = "/".join(("shared", "spec"))  # spelled apart so this file passes itself
ALLOWED_OUTSIDE = ("shared/data/",)

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
SKIP_SCHEMES = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def tracked_files(root):
    """Tracked paths (relative, '/'-separated), or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-z"], check=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    files = [p for p in out.decode("utf-8", "replace").split("\0") if p]
    return files or None


class Repo:
    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.tracked = tracked_files(self.root)
        if self.tracked is not None:
            self.files = set(self.tracked)
            self.dirs = set()
            for f in self.tracked:
                parts = f.split("/")
                for i in range(1, len(parts)):
                    self.dirs.add("/".join(parts[:i]))
            self.top = {f.split("/")[0] for f in self.tracked}
        else:  # a source tree without .git: what is on disk
            self.files = self.dirs = None
            self.top = set(os.listdir(self.root)) - {".git"}

    def exists(self, rel):
        """rel: normalised path relative to the root, inside it."""
        rel = rel.rstrip("/")
        if rel in ("", "."):
            return True
        if self.files is not None:
            if rel in self.files or rel in self.dirs:
                return True
            if any(ch in rel for ch in "*?["):
                return any(fnmatch.fnmatchcase(f, rel) for f in self.files)
            return False
        full = os.path.join(self.root, rel)
        return bool(glob.glob(full)) if any(ch in rel for ch in "*?[") else os.path.exists(full)

    def relative(self, base_dir, path):
        """path as seen from base_dir (relative to the root): (rel, inside)."""
        joined = os.path.normpath(os.path.join(base_dir, path))
        joined = joined.replace(os.sep, "/")
        if joined == ".":
            joined = ""
        inside = not (joined == ".." or joined.startswith("../"))
        return joined, inside


def markdown_files(repo):
    if repo.tracked is not None:
        names = [f for f in repo.tracked
                 if f == "README.md" or (f.startswith("docs/") and f.endswith(".md"))]
    else:
        names = ["README.md"] if os.path.exists(os.path.join(repo.root, "README.md")) else []
        for d, _, fs in os.walk(os.path.join(repo.root, "docs")):
            for f in fs:
                if f.endswith(".md"):
                    names.append(os.path.relpath(os.path.join(d, f), repo.root).replace(os.sep, "/"))
    return sorted(names)


def prose_lines(text):
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for n, line in enumerate(text.split("\n"), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield n, line


def looks_like_repo_path(token, repo):
    if "/" not in token or any(c.isspace() for c in token):
        return False
    if any(c in token for c in "{}<>$|()=,;:'\"\\"):
        return False
    if token.startswith("./") or token.startswith("../"):
        return True
    return token.split("/")[0] in repo.top


def check_markdown(repo, name, problems):
    with open(os.path.join(repo.root, name), encoding="utf-8") as f:
        text = f.read()
    base = os.path.dirname(name)
    for n, line in prose_lines(text):
        where = f"{name}:{n}"
        code_spans = [m.group(2).strip() for m in INLINE_CODE.finditer(line)]
        plain = INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)
        targets = [m.group(1) for m in LINK.finditer(plain)]
        m = REF_DEF.match(plain)
        if m:
            targets.append(m.group(1))
        for target in targets:
            if SKIP_SCHEMES.match(target) or target.startswith("#"):
                continue
            path = target.split("#", 1)[0].split("?", 1)[0]
            if not path:
                continue
            rel, inside = repo.relative(base, path)
            if not inside:
                if not any(a in rel for a in ALLOWED_OUTSIDE):
                    problems.append(f"{where}: link '{target}' points outside the repository")
            elif not repo.exists(rel):
                problems.append(f"{where}: link '{target}' does not resolve ({rel} is not in the "
                                f"repository)")
        for token in code_spans:
            token = token.rstrip(".,;:")
            if not looks_like_repo_path(token, repo):
                continue
            path = token.split("#", 1)[0]
            candidates = []
            for base_dir in ("", base):
                rel, inside = repo.relative(base_dir, path)
                candidates.append((rel, inside))
            if any(inside and repo.exists(rel) for rel, inside in candidates):
                continue
            outside = [rel for rel, inside in candidates if not inside]
            if outside and all(any(a in rel for a in ALLOWED_OUTSIDE) for rel in outside):
                continue
            problems.append(f"{where}: path `{token}` is not in the repository")


def check_forbidden(repo, problems):
    if repo.tracked is None:
        walk = []
        for d, dirs, fs in os.walk(repo.root):
            dirs[:] = [x for x in dirs if x != ".git"]
            walk += [os.path.relpath(os.path.join(d, f), repo.root) for f in fs]
        files = sorted(p.replace(os.sep, "/") for p in walk)
    else:
        files = repo.tracked
    me = os.path.realpath(__file__)
    needle = FORBIDDEN.encode()
    for name in files:
        full = os.path.join(repo.root, name)
        if os.path.realpath(full) == me or not os.path.isfile(full):
            continue
        with open(full, "rb") as f:
            data = f.read()
        if needle not in data:
            continue
        for n, line in enumerate(data.split(b"\n"), 1):
            if needle in line:
                problems.append(f"{name}:{n}: mentions '{FORBIDDEN}': the specification is "
                                f"docs/spec/model.md and docs/spec/conformance.md, inside the "
                                f"repository")


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                       "..")
    if not os.path.isdir(root):
        print(f"check_docs.py: no such folder: {root}", file=sys.stderr)
        return 2
    repo = Repo(root)
    problems = []
    names = markdown_files(repo)
    if "README.md" not in names:
        problems.append("README.md: missing")
    for name in names:
        check_markdown(repo, name, problems)
    check_forbidden(repo, problems)
    for p in problems:
        print(f"docs: {p}")
    if problems:
        print(f"docs: {len(problems)} problem(s) in {len(names)} Markdown files", file=sys.stderr)
        return 1
    print("docs: all links resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
