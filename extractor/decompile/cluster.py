"""Executors for the sweep on a cluster: `--executor local|ray[:ADDRESS]|dask[:ADDRESS]`.

Each is a `concurrent.futures.Executor` (what `sweep.sweep_all` takes) that says how many runs it
computes at once (`workers`). Ray and Dask are optional extras, imported only here and only when
asked for. A job carries the checkpoint's bytes (sweep.Payload), so the cluster's workers need
rasp-ir installed (the same version) but no file system shared with this machine; the results
come back here and are cached in PROG.runs/.
"""

from __future__ import annotations

from concurrent.futures import Executor, Future

from extractor.decompile.sweep import local_executor
from rasp_ir.diagnostics import Diagnostic, RaspError

KINDS = ("local", "ray", "dask")


def parse(text: str) -> tuple[str, str | None]:
    """`local`, `ray`, `ray:ADDRESS`, `dask`, `dask:ADDRESS` as (kind, address or None);
    RaspError X506 for anything else."""
    kind, _, address = text.partition(":")
    if kind not in KINDS or (kind == "local" and address):
        raise RaspError([Diagnostic(
            "X506", f"--executor {text!r}: expected local, ray[:ADDRESS] or dask[:ADDRESS]",
            hint="ray:auto or ray:HOST:6379 joins a running Ray cluster; dask:tcp://HOST:8786 "
            "a Dask scheduler")])
    return kind, address or None


def open_executor(text: str, workers: int, device: str = "cpu") -> Executor:
    """The executor `text` names (see `parse`); `workers` sizes the local one; `device` is
    where the runs compute (Ray gives a task a GPU only when asked). The caller shuts it down
    (for a cluster: lets go of it, the cluster keeps running)."""
    kind, address = parse(text)
    if kind == "local":
        return local_executor(workers)
    if kind == "ray":
        return RayExecutor(address, gpus=1 if device.startswith("cuda") else 0)
    return DaskExecutor(address)


def _missing(extra: str, exc: ImportError) -> RaspError:
    return RaspError([Diagnostic(
        "X506", f"--executor {extra} needs the {extra} package ({exc})",
        hint=f"pip install 'rasp-ir[{extra}]' (on this machine and on the cluster's workers)")])


def _unreachable(kind: str, address: str | None, exc: Exception) -> RaspError:
    where = f" at {address}" if address else ""
    return RaspError([Diagnostic("X506", f"cannot reach the {kind} cluster{where}: "
                                 f"{type(exc).__name__}: {exc}")])


class RayExecutor(Executor):
    """Jobs as Ray tasks of one CPU each. Joins the Ray instance this process already runs
    (`ray.init` called by the caller), else `ray.init(address)`: a running cluster's address,
    `auto`, or none (Ray's own rule: RAY_ADDRESS, a cluster started on this machine, else a new
    local one). `workers` is the cluster's CPU count, or with `gpus` (a GPU per job: Ray hides
    the GPUs from a task that asks for none) its GPU count."""

    threads = 1

    def __init__(self, address: str | None = None, gpus: int = 0):
        try:
            import ray
        except ImportError as exc:
            raise _missing("ray", exc) from None
        self._ray = ray
        self._joined = False
        if not ray.is_initialized():
            try:
                ray.init(address=address, log_to_driver=False, include_dashboard=False)
            except Exception as exc:          # noqa: BLE001 -- Ray raises many kinds
                raise _unreachable("ray", address, exc) from None
            self._joined = True
        resources = ray.cluster_resources()
        self.gpus = gpus
        self.workers = max(1, int(resources.get("GPU", 0) // gpus if gpus else
                                  resources.get("CPU", 1)))
        self._remote = {}

    def submit(self, fn, /, *args, **kwargs) -> Future:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(num_cpus=1, num_gpus=self.gpus,
                                                         max_retries=0)(fn)
        return remote.remote(*args, **kwargs).future()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._joined:            # a Ray this executor started or joined; not the caller's
            self._ray.shutdown()
            self._joined = False


class DaskExecutor(Executor):
    """Jobs as Dask tasks on the scheduler at `address` (else Dask's own rule: the configured
    scheduler address, DASK_SCHEDULER_ADDRESS, else a new local cluster). `workers` is the
    cluster's thread count; each run uses one torch thread."""

    threads = 1

    def __init__(self, address: str | None = None):
        try:
            from distributed import Client
        except ImportError as exc:
            raise _missing("dask", exc) from None
        try:
            self._client = Client(address, timeout="20s") if address else Client(timeout="20s")
        except Exception as exc:              # noqa: BLE001 -- OSError, TimeoutError, …
            raise _unreachable("dask", address, exc) from None
        self.workers = max(1, sum(self._client.nthreads().values()))
        self._executor = self._client.get_executor(pure=False)

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._client.close()
