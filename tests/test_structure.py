"""The package's import structure: no import loops, and no module imports one above it.

Every module of ``src/numlp`` has a floor below; a module may import (at the top or inside a
function alike) only from lower floors. A new module joins by taking its place here: the
failure message says which.
"""

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"

FLOORS = {
    # plain helpers and the loop's small parts: NumPy (or nothing) only
    0: "registry atomic kernels_numba",  # registries; safe files; fused loops (numba)
    1: "kernels _version checks init metrics npyfile preprocess rundir threads schedules "
    "data.images train.batches train.callbacks train.state",
    2: "layers data.idx data.augment",  # the math; the files datasets come in; distortions
    3: "losses optim data.catalog",
    4: "scoring gradcheck data.download",
    5: "train.loop",  # the training loop needs no model class
    6: "train data.datasets",
    7: "model committee data data.convert progress",
    8: "io export config data.own",  # files, other formats, settings; your own data
    9: "checkpoint bench ensemble parts",  # a config's parts; committees joined from files
    10: "run sklearn",  # config -> data, parts, fit, files: single runs, committees, trials
    11: "report serve sweep.space sweep.storage",
    12: "sweep.trial",  # a trial is a run of numlp train
    13: "sweep.worker sweep.show",
    14: "sweep.driver",
    15: "sweep",
    16: "cli.common",
    17: "cli.train cli.models cli.runs cli.data cli.sweep",  # one module per command group
    18: "cli",
    19: "__main__ __init__ cli.__main__",
}
FLOOR = {
    f"numlp.{m}" if m != "__init__" else "numlp": n for n, ms in FLOORS.items() for m in ms.split()
}


def modules() -> dict[str, Path]:
    found = {}
    for path in (SOURCE / "numlp").rglob("*.py"):
        name = ".".join(path.relative_to(SOURCE).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: dict) -> set[str]:
    """The numlp modules ``path`` imports, at its top or inside its functions."""

    def owner(name: str) -> str:
        while name not in known:
            name = name.rpartition(".")[0]
        return name

    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {owner(a.name) for a in node.names if a.name.startswith("numlp")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("numlp"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else owner(node.module))
    return found


def test_every_module_has_a_floor():
    missing = sorted(set(modules()) - set(FLOOR))
    assert not missing, f"give these modules a floor in tests/test_structure.py: {missing}"


def test_no_module_imports_one_on_its_own_floor_or_above():
    known = modules()
    upward = [
        f"{name} (floor {FLOOR[name]}) imports {other} (floor {FLOOR[other]})"
        for name, path in known.items()
        for other in imports(path, known) - {name}
        if FLOOR[other] >= FLOOR[name]
    ]
    assert not upward, "\n".join(upward)  # floors strictly below: so no loop either
