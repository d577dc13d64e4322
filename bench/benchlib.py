"""What the benchmarks share: machine facts, figures with their spread, JSON output, and
contenders alternated round by round in one run, in an order reversed every other round
(AB BA AB ...).

The machine is shared and its speed drifts, so two figures are only compared when they were
measured in the same run, in alternation: each contender runs in a worker process of its own
(own environment variables, thread pools and imports: TensorFlow with or without oneDNN,
PyTorch), builds its model once, then waits on stdin for its turn; a round gives each
contender its turn, forward in odd rounds and backward in even ones, so that neither always
follows the other. A figure is the median over rounds, with the min-max; a ratio of two
contenders is the median of the per-round ratios with a bootstrap 95% confidence interval,
and a "tie" when that interval holds 1. The load average before and after each turn is
recorded beside the figures (the machine is shared: it tells a quiet round from a busy one).

A contender's `factory` is 'module:function' of a module in bench/; the function takes the
contender's keyword arguments and returns a `Task`. `python bench/benchlib.py --worker` is the
worker's entry point (not for use by hand).
"""
import dataclasses
import importlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Callable

import numpy as np

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
RESULTS = os.path.join(BENCH, 'results')
if ROOT not in sys.path:  # the project's modules, for the bench scripts run by hand
    sys.path.insert(1, ROOT)


@dataclasses.dataclass
class Task:
    """One unit of timed work (`run()` blocks until it is done) and what it processes."""
    run: Callable[[], object]
    images: int  # images per call, for images/s
    info: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Contender:
    name: str
    factory: str
    kwargs: dict = dataclasses.field(default_factory=dict)
    env: dict = dataclasses.field(default_factory=dict)
    warmup: int = 2  # untimed calls after the first (tracing) one, before any round
    about: str = ''  # what it does (fusion, layout, threads, compilation), for the JSON


def summary(values, digits=3):
    """Median and spread (min-max) of a list of figures."""
    values = sorted(values)
    n = len(values)
    median = (values[(n - 1) // 2] + values[n // 2]) / 2
    return {'median': round(median, digits), 'min': round(values[0], digits),
            'max': round(values[-1], digits), 'n': n}


def median_interval(values, level=0.95, resamples=10000, seed=0):
    """Percentile-bootstrap confidence interval of the median of `values`: the central `level`
    of the medians of `resamples` samples drawn with replacement (seeded: the same figures give
    the same interval). Rounds of a shared machine are not normally distributed (a busy round
    is an outlier), hence the median and a bootstrap rather than a mean and a t-interval."""
    values = np.asarray(values, dtype=float)
    draws = np.random.default_rng(seed).choice(values, (resamples, len(values)))
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(np.median(draws, axis=1), [tail, 100 - tail])
    return float(low), float(high)


def verdict(low, high):
    """A ratio's verdict from its confidence interval: a 'tie' when the interval holds 1."""
    if low <= 1 <= high:
        return 'tie'
    return 'faster' if low > 1 else 'slower'


def spread(figure, unit=''):
    """'12.3 img/s (11.9-12.8)' from a `summary`."""
    return f'{figure["median"]:g}{unit} ({figure["min"]:g}-{figure["max"]:g})'


def versions():
    found = {}
    for package in ('tensorflow', 'keras', 'numpy', 'torch'):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def machine():
    """CPU model, clock, the SIMD flags that matter, cores, memory; library versions."""
    info = {}
    with open('/proc/cpuinfo') as f:
        for line in f:
            key, _, value = line.partition(':')
            info.setdefault(key.strip(), value.strip())
    flags = info.get('flags', '').split()
    wanted = ('avx2', 'fma', 'avx512f', 'avx512_bf16', 'avx512_vnni', 'amx_bf16', 'amx_tile')
    with open('/proc/meminfo') as f:
        memory = int(f.readline().split()[1]) // 1024 ** 2
    return {
        'cpu': info.get('model name'), 'cpu_family': info.get('cpu family'),
        'cpu_model': info.get('model'), 'mhz': float(info.get('cpu MHz', 0)),
        'simd_flags': [flag for flag in wanted if flag in flags],
        'cores': os.cpu_count(), 'memory_gib': memory, 'arch': platform.machine(),
        'python': platform.python_version(), 'versions': versions(),
        'date': time.strftime('%Y-%m-%d'),
    }


def torch_available():
    return importlib.util.find_spec('torch') is not None


def add_output_flags(parser, name):
    parser.add_argument('--quick', action='store_true',
                        help='A smoke test under a minute (figures not meaningful).')
    parser.add_argument('--output', default=None,
                        help=f'JSON results file (default: bench/results/{name}.json; with '
                             f'--quick: bench/results/{name}_quick.json, not committed).')


def write_results(result, options, name):
    """Write `result` (with the machine) as JSON to --output or bench/results/; print it."""
    path = options.output or os.path.join(RESULTS, name + ('_quick' if options.quick else '')
                                          + '.json')
    result = {'machine': machine(), 'command': ' '.join(['python'] + sys.argv), **result}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(result, f, indent=1)
        f.write('\n')
    print(json.dumps(result, indent=1))
    print(f'Wrote {path}', file=sys.stderr)
    return path


class Worker:
    """A contender in its own process, building its task at once and timing calls on demand."""

    def __init__(self, contender):
        self.contender = contender
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([BENCH, ROOT]),
                   TF_CPP_MIN_LOG_LEVEL='2', **contender.env)
        self.log = tempfile.NamedTemporaryFile('w+', suffix='.log', prefix='bench_worker_')
        self.process = subprocess.Popen(
            [sys.executable, '-u', os.path.abspath(__file__), '--worker'], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.send(dataclasses.asdict(contender))

    def send(self, message):
        self.process.stdin.write(json.dumps(message) + '\n')
        self.process.stdin.flush()

    def receive(self):
        for line in self.process.stdout:
            if line.startswith('@@'):
                return json.loads(line[2:])
        self.log.seek(0)
        raise RuntimeError(f'worker {self.contender.name} died:\n{self.log.read()[-3000:]}')

    def close(self):
        if self.process.poll() is None:
            try:
                self.send({'quit': True})
                self.process.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()  # our own worker, stuck: its figures are in already
                self.process.wait()
        self.log.close()


def round_order(contenders, number):
    """The turns of round `number` (from 1): forward in odd rounds, backward in even ones
    (AB BA AB ...), so a drift within a round (the machine getting busier, a worker's caches
    going cold while it waits) does not always favour the same contender."""
    return list(contenders) if number % 2 else list(contenders)[::-1]


def load_average():
    """The 1-, 5- and 15-minute load averages (runnable threads, ours included)."""
    return [round(load, 2) for load in os.getloadavg()]


def alternate(contenders, rounds, calls, warm=0):
    """Run `rounds` rounds; in each, every contender in turn (`round_order`) makes `warm`
    untimed then `calls` timed calls. Returns {name: {...}} with per-round images/s, CPU cores
    used, its turn in the round, the load averages before and after its turn, and the median.

    Workers are started one after the other (building a model is timed apart and not in any
    figure), so the first step's tracing of one never overlaps another's rounds.
    """
    workers, results = [], {}
    try:
        for contender in contenders:
            workers.append(Worker(contender))
            ready = workers[-1].receive()
            results[contender.name] = dict(ready, about=contender.about, rates=[], cores=[],
                                           round_seconds=[], turns=[], load_before=[],
                                           load_after=[])
        for number in range(1, rounds + 1):
            for turn, worker in enumerate(round_order(workers, number), 1):
                result = results[worker.contender.name]
                result['load_before'].append(load_average())
                worker.send({'calls': calls, 'warm': warm})
                timing = worker.receive()
                result['load_after'].append(load_average())
                wall = sum(timing['wall'])
                result['rates'].append(result['images'] * calls / wall)
                result['cores'].append(sum(timing['cpu']) / wall)
                result['round_seconds'].append(round(wall, 3))
                result['turns'].append(turn)
            print(f'round {number}/{rounds}: ' + ', '.join(
                f'{name} {result["rates"][-1]:.4g} img/s' for name, result in results.items()),
                file=sys.stderr, flush=True)
    finally:
        for worker in workers:
            worker.close()
    for result in results.values():
        result['images_per_second'] = summary(result['rates'])
        result['cpu_cores_used'] = summary(result['cores'], 2)
        result['rates'] = [round(rate, 3) for rate in result['rates']]
        result['cores'] = [round(core, 2) for core in result['cores']]
    return results


def ratio(results, numerator, denominator):
    """Per-round ratio of two contenders' images/s (they ran back to back), summarised, with
    the bootstrap 95% interval of its median and the verdict for the numerator."""
    ratios = [a / b for a, b in zip(results[numerator]['rates'], results[denominator]['rates'])]
    low, high = median_interval(ratios)
    return dict(summary(ratios), ci95=[round(low, 3), round(high, 3)],
                verdict=verdict(low, high))


def peer_ratios(results):
    """`ratio_<a>_over_<b>` of each of ours (contenders named tensorflow*) over each PyTorch
    contender, and of ours over ours with Keras' batch norm (`tensorflow_keras_bn`)."""
    ours = [name for name in results if name.startswith('tensorflow')]
    pairs = [(a, b) for a in ours for b in results if b.startswith('pytorch')]
    if 'tensorflow_keras_bn' in results:
        pairs.append(('tensorflow', 'tensorflow_keras_bn'))
    return {f'ratio_{a}_over_{b}': ratio(results, a, b) for a, b in pairs}


def cpu_seconds(pid='self'):
    """User + system CPU time of a process and its live descendants (e.g. PyTorch's loader
    processes), from /proc; 10 ms resolution."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
        for task in os.listdir(f'/proc/{pid}/task'):
            with open(f'/proc/{pid}/task/{task}/children') as f:
                total += sum(cpu_seconds(child) for child in f.read().split())
    except (FileNotFoundError, ProcessLookupError):
        return 0.0  # a child that ended meanwhile
    return total


def worker_main():
    spec = json.loads(sys.stdin.readline())
    module, function = spec['factory'].split(':')
    began = time.perf_counter()
    task = getattr(importlib.import_module(module), function)(**spec['kwargs'])
    built = time.perf_counter() - began
    began = time.perf_counter()
    task.run()
    first = time.perf_counter() - began
    for _ in range(spec['warmup']):
        task.run()
    print('@@' + json.dumps({'build_seconds': round(built, 3), 'first_call_seconds':
                             round(first, 3), 'images': task.images, 'info': task.info}))
    for line in sys.stdin:
        order = json.loads(line)
        if order.get('quit'):
            sys.stdout.flush()
            os._exit(0)  # no interpreter teardown: tf.data threads can hold it for minutes
        for _ in range(order['warm']):
            task.run()
        wall, cpu = [], []
        for _ in range(order['calls']):
            began, cpu_began = time.perf_counter(), cpu_seconds()
            task.run()
            wall.append(time.perf_counter() - began)
            cpu.append(cpu_seconds() - cpu_began)
        print('@@' + json.dumps({'wall': wall, 'cpu': cpu}))


if __name__ == '__main__' and sys.argv[1:] == ['--worker']:
    worker_main()
