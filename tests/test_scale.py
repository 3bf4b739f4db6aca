"""Scale (issue 12): the process pool, the result cache and Ray give the report a serial scan gives, in order."""

from __future__ import annotations

import gc
import json
import logging
import multiprocessing.forkserver
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlsec import rules
from mlsec.cache import CACHE_NAME, ResultCache
from mlsec.executors import forks_cheaply
from mlsec.limits import ScanLimits
from mlsec.report import ScanReport
from mlsec.scan import Progress, scan
from tests.conftest import FIXTURES
from tests.hostile import HOSTILE_SCANNER, hostile_scan, npy_files


def _body(report: ScanReport) -> dict:
    doc = report.to_dict()
    del doc["started_at"], doc["finished_at"]
    return doc


@pytest.fixture(scope="module")
def serial() -> ScanReport:
    return scan([str(FIXTURES)], jobs=1)


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """A copy of the model fixtures, to change files in."""
    return Path(shutil.copytree(FIXTURES / "models", tmp_path / "models"))


def _read_bytes() -> int:
    """Bytes this process has read through system calls (page-cache hits included): /proc/self/io's rchar."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.parametrize("start", ["fork", "forkserver"])
def test_the_pool_report_is_the_serial_report(serial: ScanReport, start: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlsec import executors

    monkeypatch.setattr(executors, "_start_method", lambda: start)
    seen: list[Progress] = []
    pooled = scan([str(FIXTURES)], jobs=2, progress=seen.append)
    assert gc.get_freeze_count() == 0  # the pool froze this process's objects while it forked and ran, no longer
    assert len(serial.artifacts) > 300  # the whole fixture tree, malicious files too
    assert len(serial.findings) > 200
    assert _body(pooled) == _body(serial)
    assert {p.executor for p in seen} == {"process pool"}
    assert seen[-1].done == seen[-1].total > 300
    assert seen[-1].bytes_done == seen[-1].bytes_total


def test_the_walk_waits_while_the_workers_have_enough_queued(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """More than QUEUED_BATCHES a worker pending and the walk waits for results: they come while it is not
    over (a tree of any size keeps what is pending, and looked over, that small); the report is the serial one."""
    from mlsec import executors, inputs

    monkeypatch.setattr(sys.modules["mlsec.scan"], "CHUNK_UNITS", 8)
    monkeypatch.setattr(executors, "QUEUED_BATCHES", 1)
    expected = scan([str(models)], jobs=1)
    walking, seen_walking = [True], []
    real_plan = inputs.plan

    def plan(paths: list[str]) -> Iterator[object]:
        yield from real_plan(paths)
        walking[0] = False

    monkeypatch.setattr(inputs, "plan", plan)
    pooled = scan([str(models)], jobs=2, progress=lambda _: seen_walking.append(walking[0]))
    assert _body(pooled) == _body(expected)
    assert seen_walking.count(True) > 10, seen_walking  # results while the walk was not over


@pytest.mark.parametrize(("chunk", "other_thread"), [(512, False), (8, False), (512, True)])
def test_a_killed_worker_costs_no_result(models: Path, chunk: int, other_thread: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL one worker as the first unit finishes: the units it took down are scanned again, in order. With
    small chunks the pool breaks while the walk still goes on: the chunks after it are scanned too. With another
    thread alive the pool's workers come from a fork server, whose workers the broken pool ends are often
    reported with exit code 255 (status unread), which blames none of their files."""
    monkeypatch.setattr(sys.modules["mlsec.scan"], "CHUNK_UNITS", chunk)
    expected = scan([str(models)], jobs=1)
    killed: list[int] = []

    def kill_one(progress: Progress) -> None:
        forked = [child.pid for child in multiprocessing.active_children()]  # workers forked from this process
        server = multiprocessing.forkserver._forkserver._forkserver_pid  # noqa: SLF001 - or from the fork server
        workers = [pid for pid in [*forked, *(_children(server) if server else [])] if pid and pid not in killed]
        if not killed and workers:
            os.kill(workers[0], signal.SIGKILL)
            killed.append(workers[0])

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    if other_thread:
        thread.start()
    try:
        assert not (other_thread and forks_cheaply())  # with another thread alive, a fork server's workers
        pooled = scan([str(models)], jobs=2, progress=kill_one)
    finally:
        stop.set()
        if other_thread:
            thread.join()
    assert killed, "no worker was found to kill"
    assert _body(pooled) == _body(expected), [(e.path, e.reason) for e in pooled.errors if e.error_type == "WorkerDied"]


@pytest.mark.parametrize(
    ("does", "reason"),
    [
        ("hang", "native code still running at twice max_seconds"),  # of CPU (SIGPROF), or of wall-clock time on a busy CPU
        ("crash", "SIGSEGV (a crash"),
        ("block", "blocked past twice max_seconds of wall-clock time"),
    ],
)
def test_a_file_that_ends_its_pool_worker_is_an_error_after_one_try(tmp_path: Path, does: str, reason: str) -> None:
    """The SIGALRM deadline cannot stop a call inside C (here PBKDF2 with 200 million rounds, which never checks for
    signals): a pool's worker ends at twice max_seconds of CPU. Or native code crashes it, or waits for ever without
    the CPU where Python's signal handlers never run, and the pool's parent stops the worker by the wall clock. Each
    way that one file is an error in a finished scan, and it was tried once: the worker's cells on the board name it
    (culprits.py), so neither a fresh pool nor a pool of its own tries it again (twice max_seconds each)."""
    files = npy_files(tmp_path / "models", 6)
    tries = tmp_path / "tries"
    started = time.monotonic()
    child = hostile_scan(does, "weights3.npy", *files, "-j", "2", "--limit", "max_seconds=0.5", MLSEC_TEST_TRIES=str(tries))
    assert time.monotonic() - started < 30  # not after the call came back by itself
    assert child.returncode == 3, child.stderr[-3000:]  # the command's own process did not end itself
    report = ScanReport.from_json(child.stdout)
    assert [(Path(e.path).name, e.error_type) for e in report.errors] == [("weights3.npy", "WorkerDied")]
    assert reason in report.errors[0].reason
    assert tries.read_text() == "tried\n"
    assert sorted(Path(a.path).name for a in report.artifacts) == [f"weights{i}.npy" for i in (0, 1, 2, 4, 5)]


_WORKER_THREADS_CHILD = """
import sys
preloaded = sys.argv[1] == "preloaded"
if preloaded:
    import pyarrow
from mlsec import executors
from mlsec.limits import ScanLimits
from mlsec.rules import load_ruleset
from mlsec.scan_unit import ScanSettings
executors._init_worker(ScanSettings(load_ruleset(), ScanLimits()))
import pyarrow
print(pyarrow.cpu_count())
"""


@pytest.mark.parametrize("when", ["preloaded", "lazily"])
def test_a_pool_worker_gives_arrow_one_thread(when: str) -> None:
    """N workers on N cores: Arrow in each gets one thread, whether the parent loaded it or the worker does."""
    pytest.importorskip("pyarrow")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: Arrow has one thread here anyway")
    child = subprocess.run(
        [sys.executable, "-c", _WORKER_THREADS_CHILD, when], capture_output=True, text=True, timeout=120, check=False,
        env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"},
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["1"]


@pytest.mark.parametrize("start", ["fork", "forkserver"])
def test_workers_start_on_the_first_chunk_while_the_walk_goes_on(
    models: Path, tmp_path: Path, start: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk hands the pool CHUNK_UNITS units at a time: the pool starts on the first chunk, the report is
    still the serial one, progress totals grow as the walk finds units, and a warm re-scan of many chunks
    (each answered by the cache) forks nothing."""
    from mlsec import executors, inputs

    monkeypatch.setattr(executors, "_start_method", lambda: start)
    monkeypatch.setattr(sys.modules["mlsec.scan"], "CHUNK_UNITS", 16)
    expected = scan([str(models)], jobs=1)
    walked = [0]
    real_plan, real_pool = inputs.plan, executors._pool

    def counting(paths: list[str]) -> Iterator[object]:
        for item in real_plan(paths):
            walked[0] += 1
            yield item

    pools: list[int] = []  # how much of the tree was walked when each pool started
    workers: list[object] = []

    def noting(*args: object, **kwargs: object) -> list[int]:
        pools.append(walked[0])
        workers.append(args[0])
        return real_pool(*args, **kwargs)

    monkeypatch.setattr(inputs, "plan", counting)
    monkeypatch.setattr(executors, "_pool", noting)
    cache = ResultCache(tmp_path / "cache")
    seen: list[Progress] = []
    cold = scan([str(models)], jobs=2, cache=cache, progress=seen.append)
    units = seen[-1].total
    assert units > 64  # several chunks
    assert _body(cold) == _body(expected)
    assert len(pools) == 1
    assert pools[0] < walked[0] / 2  # forked when a chunk's worth was walked, not the whole tree
    totals = [p.total for p in seen]
    assert totals == sorted(totals)
    assert (seen[-1].done, seen[-1].bytes_done) == (units, seen[-1].bytes_total)
    warm_seen: list[Progress] = []
    warm = scan([str(models)], jobs=2, cache=cache, progress=warm_seen.append)
    assert _body(warm) == _body(expected)
    assert warm_seen[-1].done == units
    assert warm_seen[-1].cached >= 0.9 * units
    assert len(pools) == 1 + (warm_seen[-1].cached < units)  # only what the cache could not answer is scanned
    # two files changed far apart (different chunks): the pool waits for both, and both workers get one
    files = sorted(p for p in models.rglob("*.safetensors") if p.is_file())
    for changed in (files[0], files[-1]):
        os.utime(changed, ns=(3, 3))
    del pools[:], workers[:]
    again = scan([str(models)], jobs=2, cache=cache)
    assert _body(again) == _body(expected)
    assert workers[-1] == 2


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_warm_rescan_reads_no_file_and_reports_the_same(models: Path, tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    np.save(models / "benign" / "weights.npy", np.zeros((2048, 2048), dtype=np.float32))  # 16 MiB of real .npy
    cache = ResultCache(tmp_path / "cache")
    size = sum(p.stat().st_size for p in models.rglob("*") if p.is_file())
    before = _read_bytes()
    cold = scan([str(models)], jobs=1, cache=cache)
    cold_read = _read_bytes() - before
    seen: list[Progress] = []
    before = _read_bytes()
    warm = scan([str(models)], jobs=1, cache=cache, progress=seen.append)
    warm_read = _read_bytes() - before
    assert _body(warm) == _body(cold)
    assert cold_read >= size
    # what it did read: the rules, the cache's own pages, and the few files whose results are never cached
    assert warm_read < size / 10, f"the warm scan read {warm_read} bytes of a {size}-byte tree"
    assert seen[-1].cached >= 0.9 * seen[-1].total  # a few (errors, malformed files) are always scanned again
    assert cache.stats()["results"] == seen[-1].cached


def test_a_changed_file_is_scanned_again(models: Path, tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    benign = models / "benign" / "sklearn_pipeline.pkl"
    scan([str(models)], jobs=1, cache=cache)
    shutil.copyfile(models / "malicious" / "os_system_protocol2.pkl", benign)  # same path, hostile bytes
    warm = scan([str(models)], jobs=1, cache=cache)
    assert any(f.location.path == str(benign) and f.severity.label == "critical" for f in warm.findings)


def test_a_touched_file_is_rescanned_unless_paranoid_hashing_finds_it_unchanged(models: Path, tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    touched = models / "benign" / "sklearn_pipeline.pkl"
    first: list[Progress] = []
    scan([str(models)], jobs=1, cache=cache, progress=first.append)
    os.utime(touched, ns=(1, 1))  # times changed, bytes not
    trusting: list[Progress] = []
    scan([str(models)], jobs=1, cache=cache, progress=trusting.append)
    os.utime(touched, ns=(2, 2))
    paranoid: list[Progress] = []
    scan([str(models)], jobs=1, cache=cache, paranoid=True, progress=paranoid.append)
    assert first[-1].cached == 0
    assert paranoid[-1].cached > 10
    assert trusting[-1].cached == paranoid[-1].cached - 1  # only the touched file was read again


def test_results_are_cached_per_rules_limits_and_tool(models: Path, tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    scan([str(models)], jobs=1, cache=cache)
    other: list[Progress] = []
    scan([str(models)], jobs=1, cache=cache, limits=ScanLimits(max_pickle_opcodes=999_999), progress=other.append)
    assert other[-1].cached == 0


def test_a_result_that_depends_on_files_beside_it_is_never_cached(tmp_path: Path) -> None:
    """config.json's auto_map names Python files; their digests are in the finding, so a change must show."""
    repo = Path(shutil.copytree(FIXTURES / "huggingface" / "plain-repo", tmp_path / "repo"))
    config = json.loads((repo / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_tiny.TinyModel"}
    (repo / "config.json").write_text(json.dumps(config))
    (repo / "modeling_tiny.py").write_text("class TinyModel: pass\n")
    cache = ResultCache(tmp_path / "cache")

    def code_facts() -> str:
        report = scan([str(repo)], jobs=1, cache=cache)
        return next(f.evidence.facts["python_files"] for f in report.findings if f.rule_id == "MLSEC-HF-001")

    before = code_facts()
    (repo / "modeling_tiny.py").write_text("import os; os.system('id')\n")
    after = code_facts()
    assert before != after
    assert "modeling_tiny.py (sha256" in after


def test_a_damaged_cache_is_set_aside(models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "cache"
    directory.mkdir()
    (directory / CACHE_NAME).write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING, logger="mlsec.cache"):
        report = scan([str(models)], jobs=1, cache=ResultCache(directory))
    assert report.artifacts
    assert "damaged" in caplog.text
    assert list(directory.glob(f"{CACHE_NAME}.damaged-*"))
    assert ResultCache(directory).stats()["results"] > 0


def test_concurrent_runs_share_one_cache(models: Path, tmp_path: Path) -> None:
    env = {**os.environ, "MLSEC_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "mlsec", "scan", str(models), "-o", "json", "--progress", "none"]
    runs = [subprocess.Popen([*cmd, "-j", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [1, 1, 1], [err.decode()[-2000:] for _, err in outputs]
    bodies = [_body(ScanReport.from_json(out.decode())) for out, _ in outputs]
    assert bodies[0] == bodies[1] == bodies[2]
    again = subprocess.run([*cmd, "--paranoid"], env=env, capture_output=True, check=False)
    assert _body(ScanReport.from_json(again.stdout.decode())) == bodies[0]


_RAY_CHILD = """
import sys, ray
from mlsec.scan import scan
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
seen = []
report = scan([sys.argv[1]], executor="ray", progress=seen.append)
ray.shutdown()
assert {p.executor for p in seen} == {"ray"}, seen[:3]
sys.stdout.write(report.to_json())
"""


def test_ray_runs_the_same_scan(serial: ScanReport) -> None:
    """A local Ray instance (`ray.init(num_cpus=2)`) in a child process of its own: under pytest's captured
    file descriptors Ray's workers start several times slower."""
    pytest.importorskip("ray", reason="the ray extra is not installed")
    child = subprocess.run(
        [sys.executable, "-c", _RAY_CHILD, str(FIXTURES)], capture_output=True, text=True, timeout=600, check=False
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert _body(ScanReport.from_json(child.stdout)) == _body(serial)


_RAY_STREAMING_CHILD = """
import sys, ray
from mlsec import executors, inputs
from mlsec.scan import scan
sys.modules["mlsec.scan"].CHUNK_UNITS = 8  # many chunks, and a round of 4 x 2 CPUs x 1 file fills at once
executors.BATCH_UNITS = 1
walking, sent_while_walking = [True], []
real_plan, real_batches = inputs.plan, executors.batches
def plan(paths):
    yield from real_plan(paths)
    walking[0] = False
def batches(units, jobs):
    sent_while_walking.append(walking[0])
    return real_batches(units, jobs)
inputs.plan, executors.batches = plan, batches
waited_while_walking, real_wait = [], ray.wait
def wait(refs, **kwargs):
    waited_while_walking.append((walking[0], len(refs)))
    return real_wait(refs, **kwargs)
ray.wait = wait
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
report = scan([sys.argv[1]], executor="ray")
ray.shutdown()
assert sent_while_walking[0] and not sent_while_walking[-1], sent_while_walking
assert len(sent_while_walking) > 3, sent_while_walking
assert any(walking for walking, _ in waited_while_walking), waited_while_walking  # the walk waited for results
assert max(n for _, n in waited_while_walking) <= 16 + 8, waited_while_walking  # 8 a CPU queued, plus a round
sys.stdout.write(report.to_json())
"""


def test_ray_tasks_go_out_while_the_walk_goes_on(models: Path) -> None:
    """Rounds of tasks are sent as the walk finds units (a round: four one-file batches per CPU here), the
    last when it ends; while more than eight tasks a CPU are queued the walk waits for results; the report
    is the serial one."""
    pytest.importorskip("ray", reason="the ray extra is not installed")
    child = subprocess.run(
        [sys.executable, "-c", _RAY_STREAMING_CHILD, str(models)], capture_output=True, text=True, timeout=600, check=False
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert _body(ScanReport.from_json(child.stdout)) == _body(scan([str(models)], jobs=1))


_RAY_TWICE_CHILD = """
import os, subprocess, sys, ray
from pathlib import Path
from mlsec.scan import scan
clone = Path(sys.argv[1])
env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
def git(*args):
    return subprocess.run(["git", *args], cwd=clone, env=env, check=True, capture_output=True, text=True).stdout.strip()
git("init", "-q", "-b", "main")
git("remote", "add", "origin", "https://huggingface.co/acme/tiny-llm")
git("add", ".")
git("commit", "-q", "-m", "weights")
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)  # one worker: both scans' tasks run in it
seen = []
for _ in range(2):
    report = scan([str(clone / "model.safetensors")], executor="ray")
    seen.append((report.artifacts[0].facts.get("hf_revision"), git("rev-parse", "HEAD")))
    git("commit", "-q", "--allow-empty", "-m", "a new HEAD")
ray.shutdown()
assert seen[0][1] != seen[1][1], seen
assert [found for found, _ in seen] == [head for _, head in seen], seen
"""


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_ray_worker_reads_a_clone_afresh_for_every_scan(tmp_path: Path) -> None:
    """Ray keeps its worker processes from one scan to the next: what a worker learned of a folder (a clone's
    HEAD) must not outlive the scan, as it does not in the driver or in a pool's workers."""
    pytest.importorskip("ray", reason="the ray extra is not installed")
    snapshot = next((FIXTURES / "huggingface" / "models--acme--tiny-llm" / "snapshots").iterdir())
    clone = shutil.copytree(snapshot, tmp_path / "tiny-llm")  # out of the cache layout: its facts are the clone's
    child = subprocess.run(
        [sys.executable, "-c", _RAY_TWICE_CHILD, str(clone)], capture_output=True, text=True, timeout=600, check=False
    )
    assert child.returncode == 0, child.stderr[-3000:]


_RAY_ELSEWHERE_CHILD = """
import os, sys, ray
from mlsec.scan import scan
elsewhere, here = sys.argv[1], sys.argv[2]
os.chdir(elsewhere)
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
where = ray.remote(lambda: os.getcwd())
assert ray.get(where.remote()) == elsewhere  # the worker has started, in the directory the driver was in
os.chdir(here)  # now the driver is elsewhere: "models" means here/models
report = scan(["models"], executor="ray")
assert ray.get(where.remote()) == elsewhere  # the worker's own directory, put back
ray.shutdown()
sys.stdout.write(report.to_json())
"""


def test_a_relative_path_names_the_same_file_on_a_ray_worker_started_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster's workers do not start in the driver's directory: relative paths are read from the driver's."""
    pytest.importorskip("ray", reason="the ray extra is not installed")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    child = subprocess.run(
        [sys.executable, "-c", _RAY_ELSEWHERE_CHILD, str(elsewhere), str(FIXTURES)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-3000:]
    ray_report = ScanReport.from_json(child.stdout)
    assert not [e for e in ray_report.errors if "No such file" in e.reason]
    monkeypatch.chdir(FIXTURES)
    assert _body(ray_report) == _body(scan(["models"], jobs=1))


def test_a_ray_node_without_the_drivers_directory_says_so_for_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlsec import ray_executor
    from mlsec.ray_executor import _scan_batch_from

    monkeypatch.setattr(ray_executor, "exit_on_overrun", lambda: None)  # this process is pytest's, not a Ray worker
    from mlsec.inputs import Unit
    from mlsec.rules import load_ruleset
    from mlsec.scan_unit import ScanSettings

    absolute = str(FIXTURES / "models" / "benign" / "sklearn_pipeline.joblib")
    units = [Unit(absolute, size=os.path.getsize(absolute)), Unit("models/benign/sklearn_pipeline.joblib")]
    first, second = _scan_batch_from(
        str(tmp_path / "not-on-this-node"), ScanSettings(load_ruleset(), ScanLimits()), units, "scan-1"
    )
    assert first.artifacts
    assert not first.errors
    assert not second.artifacts
    assert "not-on-this-node is not on this Ray node" in second.errors[0].reason


def _scan_40_files_on_hooked_ray(tmp_path: Path, hook: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`mlsec scan -o json` of 40 copies of one .npy on a local Ray instance of 1 CPU (four tasks of 10 files),
    every worker of which first runs `hook`'s setup(): injected as Ray's job submission does it
    (RAY_JOB_CONFIG_JSON_ENV_VAR), since Ray starts its workers itself."""
    pytest.importorskip("ray", reason="the ray extra is not installed")
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "testhook.py").write_text(hook)
    models = tmp_path / "models"
    models.mkdir()
    for i in range(40):
        shutil.copyfile(FIXTURES / "models" / "benign" / "weights.npy", models / f"weights{i:02d}.npy")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "hook"), os.environ.get("PYTHONPATH", "")]),
        "RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps({"runtime_env": {"worker_process_setup_hook": "testhook.setup"}}),
        **env,
    }
    cmd = [sys.executable, "-m", "mlsec", "scan", str(models), "--executor", "ray", "-j", "1", "--no-cache", *args]
    return subprocess.run(
        [*cmd, "--progress", "none", "-o", "json"], capture_output=True, text=True, timeout=600, check=False, env=env
    )


@pytest.mark.parametrize(
    ("does", "reason"), [("hang", "native code still running at twice max_seconds"), ("block", "without using the CPU")]
)
def test_a_file_that_takes_its_ray_worker_down_costs_only_itself(tmp_path: Path, does: str, reason: str) -> None:
    """Every Ray worker makes one file of 40 stick in C (hang), or wait there without the CPU (block): that worker
    ends itself (twice max_seconds of CPU), or its attempt's watcher ends it (as long by the wall clock), and Ray
    retries the task, which reads on the node which file the attempt before it overran on (culprits.Attempt): that
    file is the one error, tried once, and the batch's other files are scanned. The command's JSON on standard
    output is whole, though Ray's driver prints there that a worker died."""
    tries = tmp_path / "tries"
    child = _scan_40_files_on_hooked_ray(
        tmp_path,
        HOSTILE_SCANNER,
        "--limit",
        "max_seconds=0.5",
        MLSEC_TEST_TRIES=str(tries),
        MLSEC_TEST_BAD_FILE="weights13.npy",
        MLSEC_TEST_BAD_DOES=does,
    )
    assert child.returncode == 3, child.stderr[-3000:]  # errors: the scan is incomplete
    assert "A worker died" in child.stderr
    report = ScanReport.from_json(child.stdout)
    assert [(Path(e.path).name, e.error_type) for e in report.errors] == [("weights13.npy", "WorkerDied")]
    assert reason in report.errors[0].reason
    assert "found by Ray's retry of its task" in report.errors[0].reason
    assert tries.read_text() == "tried\n"  # before: twice in its batch (Ray's retry), twice alone
    assert len(report.artifacts) == 39
    assert not list(Path(tempfile.gettempdir(), f"mlsec-ray-{os.getuid()}").glob("*"))  # no record left behind


@pytest.mark.parametrize(("overran", "blamed"), [(True, 2), (False, None)])
def test_a_ray_attempt_reads_where_the_one_before_it_died(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overran: bool, blamed: int | None
) -> None:
    """What a worker left on its node when it died on the unit at position 2: the next attempt blames that unit only
    where its deadline had overrun (the CPU timer ended the worker), not after a crash or a kill (retried)."""
    from mlsec import culprits

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(culprits, "_watch", lambda path: None)  # this is pytest's process: no watcher may end it
    with culprits.Attempt("scan-7") as dying:
        culprits.post(2)
        culprits.arm(time.monotonic_ns() + (-1 if overran else 60 * 10**9))
        left = Path(dying.path).read_bytes()  # what stays on the node: this worker does not get to end the attempt
    assert not Path(dying.path).exists()  # an attempt that ends removes its record
    Path(dying.path).write_bytes(left)
    assert culprits.Attempt("scan-7").overran() == (None if blamed is None else (blamed, culprits.OVERRAN_BEFORE))
    assert culprits.Attempt("scan-8").overran() is None


_ATTEMPT = """
import sys, tempfile, time
tempfile.tempdir = sys.argv[1]
from mlsec import culprits

with culprits.Attempt("scan-9"):
    culprits.post(3)
    culprits.arm(time.monotonic_ns() + int(float(sys.argv[2]) * 10**9))
    time.sleep(float(sys.argv[3]))  # as long as native code that waits without the CPU, from Python's view
"""


def test_a_ray_attempts_watcher_ends_its_worker_blocked_past_its_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attempt's worker waits without the CPU past its unit's overrun time: the watcher process the attempt
    started ends it (SIGKILL) within a look or two, and marks its record, so the retry blames that unit as blocked.
    A worker within its time (here for three looks) is left alone, and its ended attempt leaves no watcher behind."""
    from mlsec import culprits

    def attempt(overrun_after: float, sleep: float) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-c", _ATTEMPT, str(tmp_path), str(overrun_after), str(sleep)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    record = culprits.Attempt("scan-9").path
    blocked = attempt(0.2, 60)
    assert blocked.returncode == -signal.SIGKILL, blocked.stderr
    assert culprits.Attempt("scan-9").overran() == (3, culprits._BLOCKED + culprits._FOUND_BY_RETRY)  # noqa: SLF001

    within = attempt(60, 3 * culprits.WATCH_SECONDS)
    assert within.returncode == 0, within.stderr
    assert not os.path.exists(record)
    watching = [p for p in Path("/proc").glob("[0-9]*") if record.encode() in _cmdline(p)]
    assert not watching


def test_a_pool_worker_whose_exit_code_was_not_read_is_blamed_for_nothing() -> None:
    """multiprocessing's 255 for a fork server's child whose status it could not read (often the workers a broken
    pool ended itself) is no death of the worker's own doing; a crash, or an exit of mlsec's own failure, is."""
    from mlsec import culprits

    board = culprits.Board(list(range(3 * culprits._CELLS)))  # noqa: SLF001 - three workers' cells
    for worker, (pid, unit) in enumerate([(101, 7), (102, 8), (103, 9)]):
        board.cells[worker * culprits._CELLS : worker * culprits._CELLS + 2] = [pid, unit]  # noqa: SLF001
    found = board.culprits([(101, 255), (102, -signal.SIGSEGV), (103, culprits.BUG)])
    assert sorted(found) == [8, 9]
    assert "SIGSEGV" in found[8]
    assert "a bug" in found[9]


def test_a_ray_attempt_without_a_python_to_start_has_no_watcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An interpreter embedded in another program has no sys.executable: the attempt keeps its record, unwatched."""
    from mlsec import culprits

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(sys, "executable", None)  # as the docs allow: "an empty string or None"
    with culprits.Attempt("scan-3") as attempt:
        culprits.post(1)
        assert attempt._watcher is None  # noqa: SLF001
        assert Path(attempt.path).stat().st_size == struct.calcsize(culprits._RECORD)  # noqa: SLF001
    assert not Path(attempt.path).exists()


def test_a_worker_stopped_overdue_is_told_blocked_from_starved_by_its_cpu_time() -> None:
    """Past its overrun time by the wall clock, a worker that used no CPU since it armed its deadline was blocked; one
    that used the CPU only fell behind its CPU timer (a CPU shared with other work): the error says which."""
    from mlsec import culprits

    sleeping = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    spinning = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # both have started: what they do from now on is what counts, as from a deadline's arming
        armed_at = time.monotonic_ns()
        cpu_at = {child: culprits._cpu_ns(child.pid) or 0 for child in (sleeping, spinning)}  # noqa: SLF001
        time.sleep(1.0)
        elapsed = time.monotonic_ns() - armed_at
        assert culprits.stopped_how(sleeping.pid, elapsed, cpu_at[sleeping]) == culprits.BLOCKED
        assert culprits.stopped_how(spinning.pid, elapsed, cpu_at[spinning]) == culprits.STARVED
    finally:
        for child in (sleeping, spinning):
            child.kill()
            child.wait()
    assert culprits.stopped_how(spinning.pid, elapsed, 0) == culprits.BLOCKED  # ended: no CPU time to read


def _cmdline(process: Path) -> bytes:
    try:
        return (process / "cmdline").read_bytes()
    except OSError:  # ended meanwhile
        return b""


def test_a_ray_attempt_keeps_no_record_in_a_folder_not_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlsec import culprits

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / f"mlsec-ray-{os.getuid()}").symlink_to(elsewhere)  # planted by someone else
    with culprits.Attempt("scan-7"):
        culprits.post(0)  # nowhere to post: the scan goes on without a record
    assert not list(elsewhere.iterdir())
    assert not culprits._POSTED  # noqa: SLF001


_BROKEN_HOOK = """
import os
from mlsec import executors


def _broken(settings, units, overran=None):
    with open(os.environ["MLSEC_TEST_TASK_LOG"], "a") as log:
        log.write(f"{len(units)}\\n")
    raise RuntimeError("this node cannot scan")


def setup():
    executors.scan_batch = _broken
"""


def test_a_ray_task_that_raises_is_not_split_file_by_file(tmp_path: Path) -> None:
    """A batch whose task raised (not one whose worker died) fails as a whole, once: splitting it would only
    raise once a file (a node where mlsec cannot run, on a million files)."""
    log = tmp_path / "tasks.log"
    child = _scan_40_files_on_hooked_ray(tmp_path, _BROKEN_HOOK, MLSEC_TEST_TASK_LOG=str(log))
    assert child.returncode == 3, child.stderr[-3000:]
    report = ScanReport.from_json(child.stdout)
    assert len(report.errors) == 40
    assert all("this node cannot scan" in e.reason for e in report.errors)
    assert log.read_text().split() == ["10", "10", "10", "10"]  # four batches, each run once, none split


def test_progress_lines_for_ci_logs(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from mlsec.cli import main
    from mlsec.cli import progress as progress_module

    monkeypatch.setattr(progress_module, "LINE_EVERY_S", 0.0)
    result = CliRunner().invoke(main, ["scan", str(models), "-o", "json=" + str(models.parent / "r.json"), "--no-cache"])
    lines = [line for line in result.stderr.splitlines() if line.startswith("mlsec: scanned ")]
    total = sum(1 for p in models.rglob("*") if p.is_file())
    assert len(lines) > total  # one per file, and the closing line
    assert lines[-1].startswith(f"mlsec: scanned {total}/{total} files")
    assert "(100%)" in lines[-1]


def test_progress_lines_say_sizes_in_units_up_to_terabytes() -> None:
    from mlsec.cli.progress import line
    from mlsec.scan import Progress

    said = line(Progress(3, 9, 2_500_000, 7_000_000_000_000_000, 1, "process pool"), 12.4)
    assert said == "mlsec: scanned 3/9 files, 2.5 MB of 7000.0 TB (0%), 1 from the cache, 12 s (process pool)"
    assert line(Progress(1, 1, 999, 999, 0, "in-process"), 0).startswith("mlsec: scanned 1/1 files, 999 B of 999 B (100%)")


def test_a_progress_bar_on_a_terminal(models: Path) -> None:
    """On a real pseudo-terminal: rich draws the bar on standard error; standard output keeps the report."""
    import pty
    import select

    leader, follower = pty.openpty()
    cmd = [sys.executable, "-m", "mlsec", "scan", str(FIXTURES), "-o", "json=" + str(models.parent / "r.json")]
    proc = subprocess.Popen(cmd, stderr=follower, stdout=subprocess.DEVNULL, env={**os.environ, "MLSEC_NO_CACHE": "1"})
    os.close(follower)
    seen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        try:
            chunk = os.read(leader, 65536) if ready else b""
        except OSError:  # the follower side closed: the command ended
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=60) == 1
    assert b"scanning" in seen
    assert b"\x1b[" in seen  # drawn with terminal control sequences, not plain lines
    assert b"mlsec: scanned" not in seen


def test_an_unknown_executor_is_a_usage_error(models: Path) -> None:
    from click.testing import CliRunner

    from mlsec.cli import main

    result = CliRunner().invoke(main, ["scan", str(models), "--executor", "spark", "--no-cache"])
    assert result.exit_code == 2
    assert "unknown executor 'spark'" in result.stderr


def test_cache_info_and_clear(models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from mlsec.cli import main

    monkeypatch.setenv("MLSEC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(rules, "_LOADED", {})  # parsed afresh, so kept in this cache directory
    runner = CliRunner()
    assert runner.invoke(main, ["scan", str(models), "-o", "json=" + str(tmp_path / "r.json")]).exit_code == 1
    assert len(list((tmp_path / "cache" / "rules").glob("*.json"))) == 1
    info = runner.invoke(main, ["cache", "info"])
    stored = ResultCache(tmp_path / "cache").stats()["results"]
    assert stored > 10
    assert f"{stored} results for {stored} files" in info.output
    assert runner.invoke(main, ["cache", "clear"]).exit_code == 0
    assert ResultCache(tmp_path / "cache").stats()["results"] == 0
    assert list((tmp_path / "cache" / "rules").glob("*.json")) == []


def test_the_cli_starts_and_stops_its_own_ray_instance(models: Path) -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed")
    expected = scan([str(models)], jobs=1)
    cmd = [sys.executable, "-m", "mlsec", "scan", str(models), "--executor", "ray", "-j", "2", "--no-cache", "-o", "json"]
    child = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert child.returncode == 1, child.stderr[-3000:]
    assert _body(ScanReport.from_json(child.stdout)) == _body(expected)


def test_the_cache_key_reads_library_versions_as_importlib_metadata_does() -> None:
    """code_digest's versions come from dist-info listings (importlib.metadata costs every scan 15 ms): they
    must be the versions importlib.metadata reports, and a name not installed is absent."""
    import importlib.metadata

    from mlsec.cache import _LIBRARIES, installed_versions

    expected = {}
    for name in (*_LIBRARIES, "click", "not-a-distribution-mlsec-knows"):
        try:
            expected[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    assert installed_versions((*_LIBRARIES, "click", "not-a-distribution-mlsec-knows")) == expected
    assert "click" in expected  # the comparison covers at least one installed distribution


def test_the_cache_key_changes_with_any_edit_to_mlsecs_sources(tmp_path: Path) -> None:
    """The scanner's own code is known by each source file's stat fingerprint, not its bytes: any write to a
    .py file (even of the same length, even with its mtime set back) changes it; compiled bytecode does not."""
    from mlsec.cache import sources_digest

    package = tmp_path / "pkg"
    (package / "scanners" / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("A = 1\n")
    source = package / "scanners" / "x.py"
    source.write_text("B = 2\n")
    before = sources_digest(package)
    (package / "scanners" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0" * 16)
    (package / "notes.txt").write_text("not code")
    assert sources_digest(package) == before
    stat = source.stat()
    time.sleep(0.02)  # a later ctime: the kernel stamps it from a clock that ticks every few milliseconds
    source.write_text("B = 3\n")  # the same size
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old mtime
    edited = sources_digest(package)
    assert edited != before
    (package / "gone.py").symlink_to(tmp_path / "nowhere.py")  # a dangling link is a change, not a crash
    assert sources_digest(package) not in (before, edited)


def test_a_warm_rescan_costs_one_stat_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry laid out one model per folder: on a warm re-scan, each file costs the walk's stat and nothing
    else; OCI layouts and provenance are answered from the walk's listings (no look for an OCI layout, .git or
    .cache per folder) unless a listing holds a marker. Counted at os.stat/os.lstat, which every path check uses
    (the walk's own stat of each file is DirEntry.stat)."""
    registry = tmp_path / "registry"
    model = FIXTURES / "models" / "benign" / "mlp.onnx"
    folders = 40
    for i in range(folders):
        (registry / f"model{i:03}").mkdir(parents=True)
        shutil.copyfile(model, registry / f"model{i:03}" / "model.onnx")
    (registry / "model000" / ".cache").mkdir()  # a listing with a marker root: that folder is checked for real
    cache = ResultCache(tmp_path / "cache")
    cold = scan([str(registry)], jobs=1, cache=cache)
    calls: list[str] = []
    real_stat, real_lstat = os.stat, os.lstat

    def counted_stat(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(os.fspath(path))
        return real_stat(path, *args, **kwargs)

    def counted_lstat(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(os.fspath(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counted_stat)
    monkeypatch.setattr(os, "lstat", counted_lstat)
    warm = scan([str(registry)], jobs=1, cache=cache)
    monkeypatch.undo()
    assert _body(warm) == _body(cold)
    in_tree = [c for c in calls if c.startswith(str(registry))]
    looks_for_markers = [c for c in in_tree if os.path.basename(c) in (".git", "download")]
    assert len(looks_for_markers) <= 3, looks_for_markers  # only model000, whose listing holds .cache
    # a few at the root and in model000; before: three per folder, then one (the look for an OCI layout)
    assert len(in_tree) <= 10, in_tree


def test_a_pool_worker_answers_provenance_from_the_walks_listings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool's workers are forked before the walk lists most folders: each batch carries the folders whose
    listing held no marker (provenance.listed), so a worker's look for .git or .cache there costs no system
    call, as in a serial scan. A folder whose listing holds a marker is looked at, and its facts found."""
    from mlsec import executors, provenance
    from mlsec.inputs import Unit, plan
    from mlsec.scan_unit import ScanSettings

    registry = tmp_path / "registry"
    for i in range(6):
        (registry / f"model{i}").mkdir(parents=True)
        shutil.copyfile(FIXTURES / "models" / "benign" / "weights.npy", registry / f"model{i}" / "weights.npy")
    git = registry / "model0" / ".git"  # a hub clone, as _read_git reads one
    git.mkdir()
    (git / "HEAD").write_text("0123456789abcdef0123456789abcdef01234567\n")
    (git / "config").write_text('[remote "origin"]\n\turl = https://huggingface.co/acme/tiny\n')
    settings = ScanSettings(rules.load_ruleset(), ScanLimits(), scan_id="walked")
    provenance.begin(settings.scan_id)
    walked = list(plan([str(registry)]))  # the parent's walk
    units = [item for item in walked if isinstance(item, Unit) and item.path.endswith(".npy")]
    listed = provenance.listed(unit.path for unit in units)
    assert sorted(os.path.basename(folder) for folder, _ in listed) == [f"model{i}" for i in range(1, 6)]
    provenance.forget()  # a worker forked before the walk: it knows none of it
    calls: list[str] = []
    for name in ("stat", "lstat"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda path, *a, real=real, **k: calls.append(os.fspath(path)) or real(path, *a, **k))
    monkeypatch.setattr(executors, "_WORKER_SETTINGS", [settings])
    collected = executors._scan_batch_in_worker(list(range(len(units))), units, listed)
    monkeypatch.undo()
    facts = {os.path.basename(os.path.dirname(c.artifacts[0].path)): c.artifacts[0].facts for c in collected}
    assert facts["model0"]["hf_repository"] == "acme/tiny"
    assert all("hf_repository" not in facts[f"model{i}"] for i in range(1, 6))
    assert str(git) in calls  # model0's listing holds .git: looked at
    assert [c for c in calls if any(c.startswith(f"{registry / f'model{i}'}{os.sep}") for i in range(1, 6))] == []


def test_a_pool_imports_the_heavy_libraries_its_files_need_once_before_forking(tmp_path: Path) -> None:
    """Workers forked after the parent imported onnx start with it (0.1 s each otherwise); a tree without .onnx
    files does not pay for it. jinja2 and TensorFlow's protobuf descriptors load only for files that need them."""
    from mlsec.scanners import heavy_modules, preload

    preload(["mlsec_no_such_library"])  # a library that cannot load is left for the scanner that needs it to report
    assert heavy_modules(["a/model.ONNX", "b.pt", "c.joblib", "d.parquet", "e.onnx"]) == [
        "onnx", "fickling.fickle", "fickling.analysis", "pandas", "pyarrow.parquet",
    ]  # fmt: skip
    assert heavy_modules(["a/model.ONNX", "b.pt", "c.joblib", "d.parquet", "e.onnx"], at_least=2) == ["onnx"]
    for name in ("mlp.onnx", "weights.npy"):
        shutil.copy(FIXTURES / "models" / "benign" / name, tmp_path / name)
    shutil.copy(FIXTURES / "models" / "benign" / "mlp.onnx", tmp_path / "second.onnx")  # one for each worker
    code = (
        "import sys, json\nfrom mlsec import scan\n"
        "if __name__ == '__main__':\n"
        "    report = scan(sys.argv[1:], jobs=2)\n"
        "    print(json.dumps([len(report.artifacts), [m in sys.modules for m in ('onnx', 'jinja2', 'google.protobuf.descriptor_pb2')]]))"
    )
    with_onnx = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert json.loads(with_onnx.stdout) == [3, [True, False, False]]
    without = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "weights.npy")], capture_output=True, text=True, check=True
    )
    assert json.loads(without.stdout) == [1, [False, False, False]]
    one = subprocess.run(  # one .onnx file for two workers: the worker that meets it imports onnx, not the parent
        [sys.executable, "-c", code, str(tmp_path / "weights.npy"), str(tmp_path / "mlp.onnx")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(one.stdout) == [2, [False, False, False]]


def test_rules_parse_once_per_process_until_a_file_changes(tmp_path: Path) -> None:
    """A service or pipeline that scans again reuses the parsed (frozen) rule set; an edited rules file counts."""
    from mlsec.rules import load_ruleset

    assert load_ruleset() is load_ruleset()
    extra = tmp_path / "rules"
    extra.mkdir()
    (extra / "local.toml").write_text('[lists.pickle_safe_globals]\nmylib = ["Model"]\n')
    first = load_ruleset([extra])
    assert first is load_ruleset([extra])
    assert first.digest != load_ruleset().digest
    (extra / "local.toml").write_text('[lists.pickle_safe_globals]\nmylib = ["Model", "Other"]\n')
    changed = load_ruleset([extra])
    assert changed.list("pickle_safe_globals")["mylib"] == ["Model", "Other"]
    assert changed.digest not in (first.digest, load_ruleset().digest)


def test_the_command_leaves_its_objects_to_the_os_at_exit() -> None:
    """The console entry point freezes the heap as it ends: the interpreter's last collection then skips the
    objects onnx and numpy loaded (17 ms); the exit code is the command's."""
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen' if gc.get_freeze_count() else 'not frozen'))\n"
        "from mlsec.cli import run\n"
        "sys.argv = ['mlsec', 'scan', sys.argv[1], '-o', 'json=' + sys.argv[2]]\n"
        "run()\n"
    )
    target = FIXTURES / "models" / "malicious" / "object_array.npy"
    out = subprocess.run([sys.executable, "-c", code, str(target), os.devnull], capture_output=True, text=True, check=False)
    assert (out.returncode, out.stdout.strip()) == (1, "frozen")


def test_a_command_run_from_another_program_leaves_its_heap_alone() -> None:
    """CliRunner (or any program calling main) keeps its garbage collection as it was: only the console
    entry point, which is the whole process, freezes the heap before writing outputs and at exit."""
    from click.testing import CliRunner

    from mlsec.cli import main

    result = CliRunner().invoke(main, ["scan", str(FIXTURES / "models" / "benign"), "-o", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["artifacts"]
    assert gc.get_freeze_count() == 0


def test_a_warm_rescan_starts_no_pool_and_imports_no_scanner(models: Path, tmp_path: Path) -> None:
    """Every unit answered by the cache: no process pool, and neither the scanners nor multiprocessing are
    imported (14 ms of a warm command's 0.16 s on the benchmark registry)."""
    code = (
        "import sys, json\nfrom mlsec import scan\nfrom mlsec.cache import ResultCache\n"
        "sys.modules['mlsec.scan'].CHUNK_UNITS = 2  # more than one chunk: the walk goes on as the executor starts\n"
        "if __name__ == '__main__':\n"
        "    report = scan([sys.argv[1]], jobs=2, cache=ResultCache(sys.argv[2]))\n"
        "    print(json.dumps([len(report.artifacts), [m in sys.modules for m in ('multiprocessing', 'mlsec.scanners')]]))"
    )
    runs = [subprocess.run([sys.executable, "-c", code, str(models / "benign"), str(tmp_path / "cache")], capture_output=True, text=True, check=True) for _ in range(2)]  # fmt: skip
    (cold_artifacts, cold_modules), (warm_artifacts, warm_modules) = (json.loads(run.stdout) for run in runs)
    assert cold_modules == [True, True]
    assert warm_artifacts == cold_artifacts
    assert warm_modules == [False, False]


def test_results_are_written_together_a_few_times_a_second(models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scan keeps its results in memory and writes them together, every COMMIT_SECONDS and at its end: another
    run (or this one, killed) finds what was written."""
    import sqlite3

    import mlsec.cache
    from mlsec.inputs import plan
    from mlsec.rules import load_ruleset
    from mlsec.scan_unit import ScanSettings, scan_unit

    clock = [100.0]
    monkeypatch.setattr(mlsec.cache.time, "monotonic", lambda: clock[0])
    settings = ScanSettings(load_ruleset(), ScanLimits(), cache_entries=True)
    cache = ResultCache(tmp_path / "cache")
    session = cache.session(settings)
    assert session is not None
    units = dict(enumerate(u for u in plan([str(models / "benign")]) if u.size))
    assert session.lookup(units) == {}

    def written() -> int:
        with sqlite3.connect(cache.path) as other:
            return other.execute("SELECT count(*) FROM results").fetchone()[0]

    first, *rest = units.values()
    session.store(first, scan_unit(settings, first))
    clock[0] += mlsec.cache.COMMIT_SECONDS * 0.9
    session.store(rest[0], scan_unit(settings, rest[0]))
    assert written() == 0  # within the interval
    clock[0] += mlsec.cache.COMMIT_SECONDS * 0.2
    session.store(rest[1], scan_unit(settings, rest[1]))
    assert written() == 3
    for unit in rest[2:]:
        session.store(unit, scan_unit(settings, unit))
    session.close()
    assert written() == sum(1 for u in units.values() if scan_unit(settings, u).cacheable)


def test_results_the_cache_cannot_take_cost_a_warning_not_the_scan(
    models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another program dropped the results table while a scan ran: its write fails, is rolled back and logged,
    and nothing is raised; the next scan's cache (its schema made again) takes results again."""
    import sqlite3

    from mlsec.inputs import plan
    from mlsec.rules import load_ruleset
    from mlsec.scan_unit import ScanSettings, scan_unit

    settings = ScanSettings(load_ruleset(), ScanLimits(), cache_entries=True)
    cache = ResultCache(tmp_path / "cache")
    session = cache.session(settings)
    assert session is not None
    units = dict(enumerate(u for u in plan([str(models / "benign")]) if u.size))
    session.lookup(units)
    with sqlite3.connect(cache.path) as other:
        other.execute("DROP TABLE results")
    for unit in units.values():
        session.store(unit, scan_unit(settings, unit))
    with caplog.at_level(logging.WARNING, logger="mlsec.cache"):
        session.close()
    assert "could not store" in caplog.text
    with sqlite3.connect(cache.path) as other:  # rolled back: no file row without its result
        assert other.execute("SELECT count(*) FROM files").fetchone()[0] == 0
    scan([str(models / "benign")], jobs=1, cache=cache)
    assert cache.stats()["results"] > 0
