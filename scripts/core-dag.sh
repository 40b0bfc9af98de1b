#!/usr/bin/env bash
# Checks that core's top-level modules form layers without cycles: each module may use
# (`crate::…`) only modules of its own layer or of a layer below, and no chain of uses
# leads back to where it started. Every module must be listed in a layer, so a new one
# is placed on purpose. Comments are ignored (a doc link is not a dependency).
# Usage: scripts/core-dag.sh [CORE_SRC_DIR]   (default: core/src)
#        scripts/core-dag.sh --self-test        (the check refuses planted breaks)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "core-dag: python3 is needed" >&2; exit 1; }
if [ "${1:-}" = "--self-test" ]; then
  # Each planted break must fail the check: a service using rpc by `crate::` and by
  # `super::`, from a nested module, and a cycle between two services.
  plants=(
    "keys.rs|fn _planted() { let _ = crate::mcp::handle_message; }"
    "executions/mod.rs|use super::tools as _planted;"
    "hosts/seal.rs|use super::super::app as _planted;"
    "policy.rs|use crate::executions as _planted;"
  )
  for plant in "${plants[@]}"; do
    t="$(mktemp -d)"
    cp -r core/src "$t/src"
    echo "${plant#*|}" >> "$t/src/${plant%%|*}"
    if "$0" "$t/src" >/dev/null; then
      echo "core-dag self-test: a planted break passed: ${plant}" >&2
      rm -rf "$t"
      exit 1
    fi
    rm -rf "$t"
  done
  echo "core-dag self-test: ${#plants[@]} planted breaks refused"
  exit 0
fi
src="${1:-core/src}"
python3 - "$src" <<'PY'
import os, re, sys

src = sys.argv[1]
# Bottom to top, read from core/src/lib.rs: a `// N. name` comment opens a layer and each
# `mod x;` / `pub mod x;` after it belongs to it. lib.rs is the one list of layers.
LAYERS = []
for line in open(os.path.join(src, "lib.rs"), encoding="utf-8"):
    if m := re.match(r"\s*// (\d+)\. (\w+)\s*$", line):
        LAYERS.append((m.group(2), ""))
    elif (m := re.match(r"\s*(?:pub(?:\(crate\))? )?mod (\w+);", line)) and LAYERS:
        name, mods = LAYERS[-1]
        LAYERS[-1] = (name, f"{mods} {m.group(1)}")
if not LAYERS:
    print("core-dag: no `// N. layer` sections found in lib.rs")
    sys.exit(1)
layer_of = {m: i for i, (_, mods) in enumerate(LAYERS) for m in mods.split()}

deps = {}
for root, _, files in os.walk(src):
    for f in files:
        if not f.endswith(".rs"):
            continue
        path = os.path.join(root, f)
        rel = os.path.relpath(path, src)
        if rel == "lib.rs":
            continue
        module = rel.split(os.sep)[0].removesuffix(".rs")
        text = open(path, encoding="utf-8").read()
        # Drop comments: `//…` to the end of the line and `/* … */`.
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        text = re.sub(r"//[^\n]*", "", text)
        used = deps.setdefault(module, {})
        # `super::` chains that climb to the crate root are `crate::` paths too.
        parts = rel.split(os.sep)
        stem = parts[-1].removesuffix(".rs")
        modpath = parts[:-1] if stem == "mod" else parts[:-1] + [stem]
        def climb(m):
            return "crate::" if m.group(0).count("super::") >= len(modpath) else m.group(0)
        text = re.sub(r"\b(?:super::)+", climb, text)

        def note(name, where):
            if name and name != module and name not in ("self", "super"):
                used.setdefault(name, where)

        # `crate::{a, b::c, d::{e, f}}`: the first name of each top-level entry.
        for m in re.finditer(r"\bcrate::\{", text):
            depth, i, entry, entries = 1, m.end(), "", []
            while i < len(text) and depth:
                c = text[i]
                depth += (c == "{") - (c == "}")
                if depth == 1 and c == ",":
                    entries.append(entry); entry = ""
                elif depth:
                    entry += c
                i += 1
            entries.append(entry)
            for e in entries:
                note(re.match(r"\s*(\w*)", e).group(1), rel)
        for m in re.finditer(r"\bcrate::(\w+)", text):
            note(m.group(1), rel)

fail = 0
for module in sorted(deps):
    if module not in layer_of:
        print(f"core-dag: module `{module}` is in no layer; declare it under a `// N. layer` comment in lib.rs")
        fail = 1
for module, used in sorted(deps.items()):
    for dep, where in sorted(used.items()):
        if dep not in layer_of:
            continue
        if module in layer_of and layer_of[dep] > layer_of[module]:
            print(f"core-dag: {where}: `{module}` ({LAYERS[layer_of[module]][0]}) uses `{dep}` ({LAYERS[layer_of[dep]][0]}), a layer above it")
            fail = 1

# Cycles: depth-first search over the module graph.
state, stack = {}, []
def visit(m):
    state[m] = "open"; stack.append(m)
    for d in sorted(deps.get(m, {})):
        if d not in deps:
            continue
        if state.get(d) == "open":
            cycle = stack[stack.index(d):] + [d]
            print("core-dag: cycle: " + " -> ".join(cycle))
            return True
        if d not in state and visit(d):
            return True
    state[m] = "done"; stack.pop()
    return False
for m in sorted(deps):
    if m not in state and visit(m):
        fail = 1
        break

edges = sum(len(u) for u in deps.values())
if fail:
    sys.exit(1)
print(f"core-dag: {len(deps)} modules, {edges} uses, {len(LAYERS)} layers: no cycle, no upward use")
PY
