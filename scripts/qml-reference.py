#!/usr/bin/env python3
"""Write the QML reference page of `import Stage` (Markdown, read by Doxygen) from the module's
sources, and warn about what is not documented.

    scripts/qml-reference.py OUTPUT.md QML_DIR

QML_DIR is qml/: its C++ types (*.h: a class with QML_NAMED_ELEMENT or QML_ELEMENT, its
Q_PROPERTYs, Q_INVOKABLE functions, Q_ENUMs and signals, each with the comment above it) and its
QML types (*.qml: the root object's property, function and signal declarations, each with the
comment above it, and the comment above the root object). A comment applies to the declarations
that follow it up to the next blank line. Types registered with QML_FOREIGN are listed with a
link to their C++ class. Every type or member without a comment is a warning on stderr, in
Doxygen's format (FILE:LINE: warning: TEXT), which `scripts/stage docs` adds to Doxygen's own.
Stdlib only.
"""
import pathlib
import re
import sys

warnings = []


def warn(path, line, text):
    warnings.append(f"{path}:{line}: warning: {text}")


def clean_comment(lines):
    """The text of a comment block (/* */, /*! */, // or //! lines), one paragraph per blank line."""
    text = "\n".join(lines)
    text = re.sub(r"^\s*/\*!?", "", text)
    text = re.sub(r"\*/\s*$", "", text)
    out = []
    for raw in text.split("\n"):
        s = raw.strip()
        s = re.sub(r"^//[!/]?\s?", "", s)
        s = re.sub(r"^\*\s?", "", s) if s.startswith("* ") or s == "*" else s
        out.append(s)
    body = "\n".join(out).strip()
    # Qt-style commands to Markdown: \a name and \c name are code.
    body = re.sub(r"\\c\{([^}]*)\}", r"`\1`", body)
    body = re.sub(r"\\[ac]\s+([\w.:()]+)", r"`\1`", body)
    return body


def comment_above(lines, index):
    """The comment block that ends right above lines[index] (skipping nothing), or None."""
    j = index - 1
    if j < 0:
        return None
    s = lines[j].strip()
    if s.endswith("*/"):
        k = j
        while k >= 0 and "/*" not in lines[k]:
            k -= 1
        return clean_comment(lines[k:j + 1]) if k >= 0 else None
    if s.startswith("//"):
        k = j
        while k - 1 >= 0 and lines[k - 1].strip().startswith("//"):
            k -= 1
        return clean_comment(lines[k:j + 1])
    return None


def grouped_comment(lines, index):
    """The comment applying to lines[index]: the one right above it, or the one above the run of
    declarations (no blank line in between) it belongs to."""
    j = index
    while j >= 0:
        c = comment_above(lines, j)
        if c is not None:
            return c
        if j - 1 < 0 or not lines[j - 1].strip():
            return None
        prev = lines[j - 1].strip()
        if prev.endswith(":") or prev.endswith("{") or re.match(r"^(Q_(?!INVOKABLE)[A-Z_]+|QML_|class |struct )", prev):
            return None
        j -= 1
    return None


def parse_header(path, rel):
    lines = path.read_text().split("\n")
    types = []
    foreign = []
    i = 0
    while i < len(lines):
        m = re.match(r"^(class|struct)\s+(\w+)\b(.*)$", lines[i])
        if not m or lines[i].rstrip().endswith(";"):
            i += 1
            continue
        kind, cls, rest = m.groups()
        start = i
        # The class body: up to the line "};" at column 0.
        end = i + 1
        while end < len(lines) and not lines[end].startswith("};"):
            end += 1
        body = lines[start:end]
        text = "\n".join(body)
        name = None
        nm = re.search(r"QML_NAMED_ELEMENT\((\w+)\)", text)
        if nm:
            name = nm.group(1)
        elif re.search(r"\bQML_(ELEMENT|ANONYMOUS)\b", text):
            name = cls
        fm = re.search(r"QML_FOREIGN\(([\w:]+)\)", text)
        if fm:
            vt = re.search(r"QML_VALUE_TYPE\((\w+)\)", text)
            foreign.append({"cpp": fm.group(1), "name": name or (vt.group(1) if vt else fm.group(1)),
                            "value": bool(vt), "creatable": "QML_UNCREATABLE" not in text})
            i = end
            continue
        if not name:
            i = end
            continue
        base = re.search(r"public\s+([\w:]+)", rest)
        t = {"name": name, "cpp": cls, "file": rel, "line": start + 1,
             "base": base.group(1) if base else None,
             "singleton": "QML_SINGLETON" in text, "anonymous": "QML_ANONYMOUS" in text, "attached": re.search(r"QML_ATTACHED\(([\w:]+)\)", text),
             "doc": comment_above(lines, start), "properties": [], "methods": [], "signals": [], "enums": []}
        if not t["doc"]:
            warn(rel, start + 1, f"QML type {name} is not documented.")
        section = "private"
        for k in range(start + 1, end):
            s = lines[k].strip()
            if re.match(r"^(public|protected|private)\b.*:$", s) or s in ("Q_SIGNALS:", "signals:"):
                section = "signals" if s in ("Q_SIGNALS:", "signals:") else s.split()[0].rstrip(":")
                continue
            pm = re.match(r"Q_PROPERTY\((.+?)\s*\b(\w+)\s+((READ|MEMBER)\b.*)\)\s*$", s)
            if pm:
                ptype, pname, spec = pm.group(1), pm.group(2), pm.group(3)
                doc = comment_above(lines, k)
                ro = "WRITE" not in spec and "MEMBER" not in spec
                t["properties"].append((pname, ptype.strip(), ro, doc))
                if not doc:
                    warn(rel, k + 1, f"QML property {name}.{pname} is not documented.")
                continue
            em = re.match(r"Q_ENUM\((\w+)\)", s)
            if em:
                vals = []
                for q in range(start, k):
                    e = re.match(rf"^\s*enum\s+(class\s+)?{em.group(1)}\b", lines[q])
                    if e:
                        r = q + 1
                        while r < k and "};" not in lines[r]:
                            v = re.match(r"^\s*(\w+)", lines[r])
                            if v:
                                vals.append(v.group(1))
                            r += 1
                t["enums"].append((em.group(1), vals))
                continue
            if section == "public" and s.startswith("Q_INVOKABLE"):
                decl = s[len("Q_INVOKABLE"):].strip()
                r = k
                while not decl.rstrip().endswith(";") and r + 1 < end:
                    r += 1
                    decl += " " + lines[r].strip()
                fm2 = re.match(r"(.+?)\b(\w+)\((.*)\)\s*(const)?\s*;", decl)
                if fm2:
                    ret, fname, args, _ = fm2.groups()
                    doc = grouped_comment(lines, k)
                    t["methods"].append((fname, ret.strip(), args.strip(), doc))
                    if not doc:
                        warn(rel, k + 1, f"QML method {name}.{fname}() is not documented.")
                continue
            if section == "signals":
                sm = re.match(r"void\s+(\w+)\((.*)\)\s*;", s)
                if sm:
                    doc = grouped_comment(lines, k)
                    t["signals"].append((sm.group(1), sm.group(2), doc))
                    if not doc:
                        warn(rel, k + 1, f"QML signal {name}.{sm.group(1)} is not documented.")
        types.append(t)
        i = end
    return types, foreign


def parse_qml(path, rel):
    lines = path.read_text().split("\n")
    root = None
    for i, line in enumerate(lines):
        m = re.match(r"^([A-Z]\w*(\.\w+)*)\s*\{", line)
        if m:
            root = (i, m.group(1))
            break
    if root is None:
        return None
    name = path.stem
    t = {"name": name, "cpp": None, "file": rel, "line": root[0] + 1, "base": root[1], "singleton": False,
         "anonymous": False,
         "attached": None, "doc": comment_above(lines, root[0]), "properties": [], "methods": [], "signals": [],
         "enums": []}
    if not t["doc"]:
        warn(rel, root[0] + 1, f"QML type {name} is not documented.")
    depth = 0
    for k in range(root[0], len(lines)):
        line = lines[k]
        if depth == 1:
            s = line.strip()
            pm = re.match(r"^(default\s+)?(required\s+)?(readonly\s+)?property\s+([\w.<>]+)\s+(\w+)", s)
            if pm:
                doc = comment_above(lines, k)
                t["properties"].append((pm.group(5), pm.group(4), bool(pm.group(3)), doc))
                if not doc:
                    warn(rel, k + 1, f"QML property {name}.{pm.group(5)} is not documented.")
            fm = re.match(r"^function\s+(\w+)\(([^)]*)\)", s)
            if fm:
                doc = grouped_comment(lines, k)
                t["methods"].append((fm.group(1), "", fm.group(2), doc))
                if not doc:
                    warn(rel, k + 1, f"QML method {name}.{fm.group(1)}() is not documented.")
            sm = re.match(r"^signal\s+(\w+)(\(([^)]*)\))?", s)
            if sm:
                doc = grouped_comment(lines, k)
                t["signals"].append((sm.group(1), sm.group(3) or "", doc))
                if not doc:
                    warn(rel, k + 1, f"QML signal {name}.{sm.group(1)} is not documented.")
        # Braces outside strings and comments are enough for these files.
        code = re.sub(r"//.*$", "", re.sub(r'"(\\.|[^"\\])*"', '""', line))
        depth += code.count("{") - code.count("}")
    return t


def cpp_ref(cls):
    q = cls if cls.startswith("stage::") else cls
    return f'\\ref {q} "{q}"'


def render(types, foreign):
    out = ["# QML types (import Stage) {#qml-types}", "",
           "The QML module `Stage` 1.0 (CMake target `Stage::Qml`; call `stage::initQml(&engine)` before "
           "loading QML that imports it). Every QML object lives on the GUI (engine) thread, and so do "
           "its signals; workers run where their Group places them. The guide is docs/qml.md.", ""]
    attached_types = {t["cpp"]: t for t in types if t.get("anonymous")}
    types = [t for t in types if not t.get("anonymous")]
    out += ["## Types", ""]
    for t in sorted(types, key=lambda t: t["name"]):
        out.append(f"- [{t['name']}](#qml-{t['name'].lower()})")
    if foreign:
        out.append("- [C++ types seen from QML](#qml-foreign)")
    out.append("")
    for t in sorted(types, key=lambda t: t["name"]):
        out += [f"## {t['name']} {{#qml-{t['name'].lower()}}}", ""]
        facts = []
        if t["singleton"]:
            facts.append("a singleton: `Stage.` followed by a member")
        if t["base"]:
            if t["base"].startswith("stage::"):
                facts.append(f"inherits every property, signal and slot of the C++ class {cpp_ref(t['base'])}")
            else:
                facts.append(f"inherits `{t['base']}`")
        facts.append(f"defined in `{t['file']}`")
        fact = "; ".join(facts)
        out += ["<em>" + fact[0].upper() + fact[1:] + ".</em>", ""]
        if t["doc"]:
            out += [t["doc"], ""]
        if t["attached"]:
            a = attached_types.get(t["attached"].group(1).split("::")[-1])
            if a:
                out += ["**Attached properties** (on an object declared in, or added to, a "
                        f"{t['name']})", ""]
                if a["doc"]:
                    out += [a["doc"], ""]
                out += ["| property | type | |", "|---|---|---|"]
                for pname, ptype, ro, doc in a["properties"]:
                    d = (doc or "").replace("\n", " ").replace("|", "\\|")
                    out.append(f"| `{t['name']}.{pname}` | `{ptype}`{' (read-only)' if ro else ''} | {d} |")
                out.append("")
        if t["enums"]:
            out += ["**Enumerations**", ""]
            for ename, vals in t["enums"]:
                out.append(f"- `{t['name']}.{ename}`: " + ", ".join(f"`{t['name']}.{v}`" for v in vals))
            out.append("")
        if t["properties"]:
            out += ["**Properties**", "", "| property | type | |", "|---|---|---|"]
            for pname, ptype, ro, doc in t["properties"]:
                d = (doc or "").replace("\n", " ").replace("|", "\\|")
                out.append(f"| `{pname}` | `{ptype}`{' (read-only)' if ro else ''} | {d} |")
            out.append("")
        if t["methods"]:
            out += ["**Methods**", ""]
            for fname, ret, args, doc in t["methods"]:
                sig = f"{ret + ' ' if ret else ''}{fname}({args})"
                out.append(f"- `{sig}`: " + (doc or "").replace("\n", " "))
            out.append("")
        if t["signals"]:
            out += ["**Signals**", ""]
            for sname, args, doc in t["signals"]:
                out.append(f"- `{sname}({args})`: " + (doc or "").replace("\n", " "))
            out.append("")
    if foreign:
        out += ["## C++ types seen from QML {#qml-foreign}", "",
                "These C++ types are registered for QML as they are: their Q_PROPERTYs, signals and "
                "Q_INVOKABLEs are what QML sees.", "", "| in QML | C++ class | |", "|---|---|---|"]
        for f in sorted(foreign, key=lambda f: f["name"]):
            how = "value type" if f["value"] else ("creatable" if f["creatable"] else "uncreatable: made in C++")
            out.append(f"| `{f['name']}` | {cpp_ref(f['cpp'])} | {how} |")
        out.append("")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    output, qml_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    repo = qml_dir.resolve().parent
    types, foreign = [], []
    for h in sorted(qml_dir.glob("*.h")):
        t, f = parse_header(h, h.resolve().relative_to(repo))
        types += t
        foreign += f
    for q in sorted(qml_dir.glob("*.qml")):
        t = parse_qml(q, q.resolve().relative_to(repo))
        if t:
            types.append(t)
    output.write_text(render(types, foreign))
    for w in warnings:
        print(w, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
