"""The shape of the code: scripts on top that import no script, one package below that takes no
argparse namespace, nothing generic installed, `--help` and flag errors before TensorFlow."""
import ast
import os
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT

PACKAGE = 'tripletreid'
SKIPPED_FOLDERS = {'tests', '.git', 'build', 'demo_output', 'experiments', '__pycache__'}
# Each script with a flag of a bad value, which argparse reports before a missing required one.
BAD_FLAGS = {'train.py': ['--batch_p', 'zero'], 'embed.py': ['--batch_size', 'zero'],
             'evaluate.py': ['--batch_size', 'zero'], 'embed_files.py': ['--batch_size', 'zero'],
             'export.py': ['--format', 'tflite2'], 'import_official.py': ['--embedding_dim', '0'],
             'demo.py': ['--seed', '-1'], 'data/build_csv.py': ['folders', '--threads', 'zero'],
             'tune_reranking.py': ['--batch_size', 'zero'],
             'activation_maps.py': ['--count', '0'],
             'curves.py': ['--experiment_root', '/nonexistent/folder']}
TOP_SCRIPTS = [script for script in BAD_FLAGS if '/' not in script]


def python_files():
    for folder, subfolders, names in os.walk(ROOT):
        subfolders[:] = [s for s in subfolders
                         if s not in SKIPPED_FOLDERS and not s.startswith('.')]
        for name in names:
            if name.endswith('.py'):
                yield os.path.relpath(os.path.join(folder, name), ROOT)


def parse(path):
    with open(os.path.join(ROOT, path)) as f:
        return ast.parse(f.read(), path)


def is_script(tree):
    """A script is its parser and `main`, run under `if __name__ == '__main__'`."""
    has_main = any(isinstance(node, ast.FunctionDef) and node.name == 'main'
                   for node in tree.body)
    guarded = any(isinstance(node, ast.If) and '__main__' in ast.unparse(node.test)
                  for node in tree.body)
    return has_main and guarded


def imported_names(tree):
    """Every module name an import statement names, anywhere in the file (also the
    `from package import module` form, as package.module)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f'{node.module}.{alias.name}' for alias in node.names)


def resolve(name, importer):
    """The file of the project that module `name` imported by `importer` is, or None. Scripts
    put their own folder on the path (bench/, studies/), the clone's root is on it too."""
    parts = name.split('.')
    for base in (ROOT, os.path.join(ROOT, os.path.dirname(importer))):
        for candidate in (os.path.join(base, *parts) + '.py',
                          os.path.join(base, *parts, '__init__.py')):
            if os.path.isfile(candidate):
                return os.path.relpath(candidate, ROOT)
    return None


def import_graph():
    """{file: set of project files it imports}, for every file outside tests/."""
    return {path: {found for name in imported_names(parse(path))
                   if (found := resolve(name, path)) and found != path}
            for path in python_files()}


def test_no_script_imports_a_script_and_the_package_imports_none():
    graph = import_graph()
    scripts = {path for path in graph if is_script(parse(path))}
    assert set(TOP_SCRIPTS) <= scripts and 'data/build_csv.py' in scripts
    wrong = sorted(f'{path} imports {target}' for path, targets in graph.items()
                   for target in targets & scripts
                   if path in scripts or path.startswith(PACKAGE + os.sep))
    assert not wrong, wrong


def test_the_import_graph_has_few_floors():
    """Floors: the longest chain of imports among the project's files, plus one (the official
    code has 2: scripts over plug-in modules)."""
    graph = import_graph()
    depth = {}

    def floors(path, seen=()):
        if path not in depth:
            assert path not in seen, f'import cycle through {path}'
            depth[path] = 1 + max((floors(t, seen + (path,)) for t in graph.get(path, ())),
                                  default=0)
        return depth[path]

    highest = max(graph, key=floors)
    print(f'{floors(highest)} floors, the highest {highest}')
    assert floors('train.py') <= 7


def test_no_package_module_takes_an_argparse_namespace():
    for path in python_files():
        if not path.startswith(PACKAGE + os.sep):
            continue
        tree = parse(path)
        source = ast.unparse(tree)
        assert 'Namespace' not in source, f'{path} builds or takes an argparse.Namespace'
        if 'import argparse' in source:
            assert path in (f'{PACKAGE}/cli.py', f'{PACKAGE}/experiment.py'), path
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.Lambda)):
                names = [a.arg for a in node.args.args + node.args.kwonlyargs]
                assert not {'args', 'namespace', 'flags'} & set(names), \
                    f'{path}: {getattr(node, "name", "lambda")}({", ".join(names)})'


def test_the_wheel_holds_no_generic_top_level_name(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'pip', 'wheel', ROOT, '--no-deps',
                             '--no-build-isolation', '-q', '-w', str(tmp_path)],
                            capture_output=True, text=True, timeout=300,
                            cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    [wheel] = [name for name in os.listdir(tmp_path) if name.endswith('.whl')]
    with zipfile.ZipFile(tmp_path / wheel) as archive:
        top_level = {name.split('/')[0] for name in archive.namelist()}
    installed = {name for name in top_level if not name.endswith('.dist-info')}
    assert installed == set(), f'the wheel installs {sorted(installed)}'


@pytest.mark.parametrize('script', sorted(BAD_FLAGS))
def test_help_and_flag_errors_come_before_tensorflow(script):
    """--help answers and a bad flag is one line naming it, without TensorFlow loading."""
    bad = BAD_FLAGS[script]
    code = f'''
import contextlib, io, runpy, sys
for argv in (['--help'], {bad!r}):
    sys.argv = [{script!r}, *argv]
    err, code = io.StringIO(), None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            runpy.run_path({script!r}, run_name='__main__')
        except SystemExit as exit:
            code = exit.code
    print(argv[0], code, repr(err.getvalue()))
print('tensorflow' in sys.modules)
'''
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    help_line, error_line, tensorflow = result.stdout.strip().splitlines()
    assert help_line.startswith('--help 0 ')
    assert tensorflow == 'False'
    first, code, message = error_line.split(' ', 2)
    message = ast.literal_eval(message)
    assert (first, code) == (bad[0], '2')
    name = os.path.basename(script)
    assert message.count('\n') == 1 and message.startswith(name) and ': error: ' in message
    flag = next(arg for arg in bad if arg.startswith('--'))
    assert f'argument {flag}' in message and f'(see {name}' in message and '--help)' in message


def test_the_readme_backbone_example_is_one_file_and_one_line(tmp_path, monkeypatch):
    """The README's worked example: its file and its registry line make a backbone that
    train.py's model builder takes by name."""
    import re

    import numpy as np

    import nets
    from tripletreid.model import build_model
    readme = open(os.path.join(ROOT, 'README.md')).read()
    code = re.search(r'```python\n# nets/tiny.py\n(.*?)```', readme, re.S).group(1)
    line = re.search(r"`('tiny': '(nets\.tiny:build)',)`", readme).group(2)
    (tmp_path / 'readme_tiny.py').write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(nets.NETS._entries, 'tiny', line.replace('nets.tiny', 'readme_tiny'))
    model = build_model('tiny', 'fc1024', 8)
    embeddings = model(np.zeros((2, 32, 16, 3), np.float32))
    assert embeddings.shape == (2, 8) and 'tiny' in sorted(nets.NETS)
