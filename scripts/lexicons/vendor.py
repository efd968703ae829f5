#!/usr/bin/env python3
"""Copy the Lexicon documents perch validates against into lexicons/.

Usage: vendor.py SOURCE_DIR

Run from the repository root. 
SOURCE_DIR holds Lexicon JSON documents (any layout, one document per file), e.g. the
official schemas as published with @atproto/api (see refresh.sh). Every record type found
there is kept, with every document its definitions reach through `ref` and `union`; the
rest is left out. Files are written as lexicons/<a>/<b>/<name>.json, byte for byte as
found, and src/lexicon/embedded.json, what the binary carries, is rewritten: the same
documents as one compact JSON array without their `description` strings (those are for
people; they would be a third of the bytes).
"""
import json
import pathlib
import shutil
import sys


def target(ref, current):
    ref = ref.removeprefix("lex:")
    if ref.startswith("#"):
        return current
    return ref.split("#", 1)[0]


def reached(node, current, out):
    if isinstance(node, dict):
        if node.get("type") == "ref":
            out.add(target(node["ref"], current))
        if node.get("type") == "union":
            out.update(target(r, current) for r in node["refs"])
        for v in node.values():
            reached(v, current, out)
    elif isinstance(node, list):
        for v in node:
            reached(v, current, out)


def without_descriptions(node):
    if isinstance(node, dict):
        # A string `description` documents its def; an object one is a property so named.
        return {k: without_descriptions(v) for k, v in node.items()
                if not (k == "description" and isinstance(v, str))}
    if isinstance(node, list):
        return [without_descriptions(v) for v in node]
    return node


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    src = pathlib.Path(sys.argv[1])
    dest = pathlib.Path("lexicons")
    docs = {}
    for path in sorted(src.rglob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(doc, dict) and doc.get("lexicon") == 1 and "id" in doc:
            docs[doc["id"]] = path
    records = [
        i for i, p in docs.items()
        if json.loads(p.read_text())["defs"].get("main", {}).get("type") == "record"
    ]
    keep, todo = set(), list(records)
    while todo:
        nsid = todo.pop()
        if nsid in keep:
            continue
        if nsid not in docs:
            sys.exit(f"{nsid} is referenced but not in {src}")
        keep.add(nsid)
        out = set()
        reached(json.loads(docs[nsid].read_text()), nsid, out)
        todo.extend(out - keep)
    for old in dest.rglob("*.json"):
        old.unlink()
    compact = []
    for nsid in sorted(keep):
        parts = nsid.split(".")
        path = dest.joinpath(*parts[:-1], parts[-1] + ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(docs[nsid], path)
        compact.append(without_descriptions(json.loads(docs[nsid].read_text())))
    pathlib.Path("src/lexicon/embedded.json").write_text(
        json.dumps(compact, separators=(",", ":"), ensure_ascii=False) + "\n"
    )
    print(f"{len(records)} record types, {len(keep)} documents in {dest}")


if __name__ == "__main__":
    main()
