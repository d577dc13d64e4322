"""Run many command lines in one Python process, each as `python SCRIPT ARGS...` runs it.

    python tests/helpers/case_runner.py CASES.json RESULTS.json

CASES.json is a list of {"id", "command", "args"}: `command` is a script path, or a module name
(`data.build_csv`) run as `python -m` runs it. Each runs as `__main__` with its own `sys.argv`,
with file descriptors 1 and 2 sent to files, so that everything it prints (Python's streams,
logging, TensorFlow's C++ messages) is captured; an exception escaping the command is printed
as the interpreter prints it. RESULTS.json maps each id to {"code", "stderr"}.

Starting TensorFlow costs a command about 5 s of CPU: paid once here instead of once a case.
"""
import json
import os
import runpy
import sys
import tempfile
import traceback


def run_one(command, args):
    """The exit code of `command` with `args`, as the interpreter would report it."""
    sys.argv = [command, *args]
    # The interpreter puts the script's folder first on the path (the working folder for -m).
    sys.path[0] = os.path.dirname(os.path.abspath(command)) if command.endswith('.py') else ''
    try:
        if command.endswith('.py'):
            runpy.run_path(command, run_name='__main__')
        else:
            runpy.run_module(command, run_name='__main__', alter_sys=True)
    except SystemExit as done:
        code = done.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    except BaseException:  # as an uncaught exception ends `python SCRIPT`
        traceback.print_exc()
        return 1
    return 0


def reset():
    """What a fresh process would not have kept from the command before."""
    if 'keras' in sys.modules:
        keras = sys.modules['keras']
        keras.mixed_precision.set_global_policy('float32')
        keras.backend.clear_session()


def captured(command, args, cwd):
    """(exit code, what it wrote to stderr) of one command; its stdout is dropped."""
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile('w+b') as out, tempfile.TemporaryFile('w+b') as err:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(out.fileno(), 1), os.dup2(err.fileno(), 2)
        try:
            os.chdir(cwd)
            code = run_one(command, args)
            sys.stdout.flush(), sys.stderr.flush()
        finally:
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            reset()
        err.seek(0)
        return code, err.read().decode('utf-8', 'replace')


def main():
    cases_path, results_path = sys.argv[1:3]
    with open(cases_path) as f:
        cases = json.load(f)
    cwd = os.getcwd()
    results = {}
    for case in cases:
        code, text = captured(case['command'], case['args'], cwd)
        results[case['id']] = {'code': code, 'stderr': text}
    with open(results_path, 'w') as f:
        json.dump(results, f)


if __name__ == '__main__':
    main()
