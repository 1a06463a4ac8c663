"""The domain stays plain Python: no module of it imports a framework."""

import ast
from pathlib import Path

import messaging_domain

FRAMEWORKS = {"django", "rest_framework", "channels", "kafka", "redis", "daphne"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_domain_module_imports_a_framework():
    modules = list(Path(messaging_domain.__file__).parent.glob("*.py"))
    assert len(modules) >= 8
    offenders = {path.name: imported_roots(path) & FRAMEWORKS for path in modules}
    assert {name: roots for name, roots in offenders.items() if roots} == {}
