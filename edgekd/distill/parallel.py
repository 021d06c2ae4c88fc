"""Independent distill runs (the folds of a cross-validation) as Ray tasks: on a local Ray that edgekd starts with N
CPUs, or on an existing cluster (`--ray-address`, or RAY_ADDRESS). Ray is imported only here, and only when asked for
(`pip install 'edgekd[scale]'`); without it the runs go one after another in this process.

Each task gets one CPU and caps TensorFlow's threads at it, so N tasks share N cores instead of each spreading over
all of them (on 2 cores, two single-threaded runs side by side finish in about half the time of one after the other).
A task writes its run folder where a serial run would: on a cluster, --out must be on a file system every node sees.
"""

from __future__ import annotations

from collections.abc import Callable

from edgekd.errors import UserError

CPUS_PER_RUN = 1


def run_in_parallel(
    configs: list, workers: int | None, address: str | None, on_done: Callable[[int, dict], None]
) -> None:
    """distill(config) for every config as a Ray task; on_done(index, report) as each finishes, in finishing order."""
    try:
        import ray
    except ImportError:
        raise UserError(
            "--workers and --ray-address run folds on Ray, which is not installed; install it with: "
            "pip install 'edgekd[scale]'"
        ) from None
    ray.init(
        address=address,
        num_cpus=None if address else workers,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        configure_logging=True,
    )
    try:
        task = ray.remote(num_cpus=CPUS_PER_RUN)(_distill_in_task)
        pending = {task.remote(config): i for i, config in enumerate(configs)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(done[0])
            try:
                report = ray.get(done[0])
            except ray.exceptions.RayTaskError as e:
                cause = e.cause if isinstance(getattr(e, "cause", None), Exception) else e
                if isinstance(cause, UserError):
                    raise UserError(cause.message) from None
                raise
            on_done(index, report)
    finally:
        ray.shutdown()


def _distill_in_task(config) -> dict:
    from edgekd._tf import tf
    from edgekd.distill.run import distill

    try:  # a worker process keeps its settings from an earlier task; they can be set only once
        tf.config.threading.set_intra_op_parallelism_threads(CPUS_PER_RUN)
        tf.config.threading.set_inter_op_parallelism_threads(CPUS_PER_RUN)
    except RuntimeError:
        pass
    return distill(config)
