"""How signals stop runs and sweeps: Ctrl-C and SIGTERM end a run as interrupted (its summary says the
step it reached, its checkpoint resumes it) and the process exits with the shell's code for the signal.

A single run, or a job of the basic launcher, runs in the process that gets the signal: Ctrl-C is
Python's KeyboardInterrupt, and `terminate_as_interrupt` makes SIGTERM one too.

A sweep whose jobs run in worker processes (`hydra/launcher=joblib`) needs more. Without it, joblib
answers the parent's KeyboardInterrupt by killing its workers (SIGKILL) at once: the jobs, which the
terminal's Ctrl-C reached too, were killed while writing their summaries, and the terminal got
joblib's traceback. So, while the launcher runs:
- the parent takes a first Ctrl-C as "stop the sweep": it passes it on to its worker processes (a
  `kill -INT` of the parent alone reaches them so) and waits for their jobs to return; a second Ctrl-C
  stops it at once, as before;
- a worker's job takes the first SIGINT or SIGTERM as an interrupt and ignores any after it (the
  terminal's Ctrl-C and the parent's arrive together), and a job given to the worker after it does not
  start (`sgdexp.errors.InterruptedJob`: an Exception, so the launcher returns it as the job's result);
- workers start with SIGINT ignored (`spawning_with_sigint_ignored`), until a job's handler takes
  over: else a Ctrl-C in a worker's first second, while it imports, killed it inside loky's start-up
  with a traceback, and the sweep ended with loky's error in place of each job's state. A signal that
  came before a job's handler was in place is not lost: the parent also leaves a stop file
  (`stop_file`), which every job looks for once its handler is in place; a worker that died of the
  signal all the same ends the sweep as interrupted, not with joblib's error.
The sweep then ends with one line and the signal's exit code.

A `hydra/launcher=submitit_local` sweep is handled the same way, its jobs being the tasks of submitit's
job controllers (one controller process per job, the job its child). The controllers start with SIGINT
ignored too, and keep it so: else the terminal's Ctrl-C raised KeyboardInterrupt in each of them (a
traceback apiece), and they SIGKILLed their jobs 1 s later, whatever those were writing. The parent
passes the signal on to the jobs themselves, and a second Ctrl-C kills jobs and controllers (SIGKILL),
as joblib does with its workers."""
from __future__ import annotations

import contextlib
import functools
import importlib
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

from sgdexp.errors import InterruptedJob

LAUNCHER_PID = "SGDEXP_SWEEP_LAUNCHER_PID"  # set by the launching process for its workers
SIGNALS = (signal.SIGINT, signal.SIGTERM)
IMPORTED_AT = time.time()  # a stop file older than this is another process' (a killed sweep's, same pid)


def exit_status(signal_name: str) -> int:
    """The shell's exit code for a process stopped by `signal_name`: 143 for SIGTERM, else 130 (Ctrl-C)."""
    return 143 if signal_name == "SIGTERM" else 130


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (`kill`, `timeout`, a scheduler stopping the job) ends the run as Ctrl-C does: its summary
    says interrupted at the step it reached, and the last checkpoint resumes it. By default SIGTERM
    ends Python where it stands, with no summary. Not under submitit, whose own handlers requeue a
    preempted or timed-out job, nor in a sweep's worker process, which has `SweepInterrupts`, and only
    in the main thread (where signal handlers live)."""
    from sgdexp.rundir import implicit_resume

    if implicit_resume() or in_worker() or threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def in_worker() -> bool:
    """Whether this process runs a job for a launching process other than itself."""
    launcher = os.environ.get(LAUNCHER_PID)
    return launcher is not None and launcher != str(os.getpid())


def stop_file(launcher_pid) -> Path:
    """The file whose presence tells the workers of the launching process `launcher_pid` that the sweep
    was interrupted (a worker cannot see the parent's memory, and may have missed the signal)."""
    return Path(tempfile.gettempdir()) / f"sgdexp-sweep-{launcher_pid}.stop"


def sweep_stopped() -> bool:
    """In a worker: whether its sweep was interrupted (the signal, or the launcher's stop file)."""
    return SweepInterrupts.requested or stop_file(os.environ[LAUNCHER_PID]).exists()


class SweepInterrupts:
    """A sweep's interrupt state in this process. In a worker: the handler of SIGINT and SIGTERM,
    installed at its first job and kept: the first signal interrupts the job running (KeyboardInterrupt,
    which the task turns into an interrupted summary), later ones only confirm it, and no job starts
    after it. `job_running` is kept by every process that runs jobs (the parent's handler asks it too)."""

    requested = False
    job_running = False
    # in the launching process: the signal that stopped the sweep (its exit status), and whether a second
    # one asked for the workers to be killed
    sweep_stopped_by = ""
    killed = False

    @classmethod
    def install(cls) -> None:
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) != cls.handle:
            for signum in SIGNALS:
                signal.signal(signum, cls.handle)

    @classmethod
    def handle(cls, signum, frame) -> None:
        first = not cls.requested
        cls.requested = True
        if first and cls.job_running:
            raise KeyboardInterrupt(signal.Signals(signum).name)


def child_processes(parent: Optional[int] = None) -> List[int]:
    """The children of process `parent`, by default this one's (Linux /proc; elsewhere none are found,
    and the terminal's Ctrl-C, which reaches the whole process group, is what stops the workers)."""
    of, children = str(os.getpid() if parent is None else parent), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == of:  # after "pid (comm)": state, ppid, ...
            children.append(int(stat.parent.name))
    return children


def submitit_jobs() -> List[int]:
    """The jobs of a `submitit_local` sweep: the children of this process' children (the controllers)."""
    return [job for controller in child_processes() for job in child_processes(controller)]


def kill_submitit_jobs() -> None:
    """A second Ctrl-C in a `submitit_local` sweep: its jobs, which take only the first, and their
    controllers, which ignore it, are killed now."""
    for pid in submitit_jobs() + child_processes():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def stop_workers_on_interrupt(launch, workers: Callable[[], List[int]] = child_processes,
                              kill_workers: Optional[Callable[[], None]] = None):
    """`launch` (a launcher's method) with the parent's handling of Ctrl-C described above: the first
    signal goes on to the processes `workers()` returns; at a second one, `kill_workers()` if given
    (joblib kills its own workers on the KeyboardInterrupt that follows)."""

    @functools.wraps(launch)
    def launched(self, *args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            return launch(self, *args, **kwargs)
        SweepInterrupts.sweep_stopped_by, SweepInterrupts.killed = "", False
        stop = stop_file(os.getpid())
        if stop.exists() and stop.stat().st_mtime < IMPORTED_AT:
            stop.unlink(missing_ok=True)

        def on_interrupt(signum, frame):
            name = signal.Signals(signum).name
            if SweepInterrupts.sweep_stopped_by or SweepInterrupts.job_running:  # the second Ctrl-C (joblib
                SweepInterrupts.killed = bool(SweepInterrupts.sweep_stopped_by)  # kills the workers now),
                if SweepInterrupts.killed and kill_workers is not None:
                    kill_workers()
                raise KeyboardInterrupt(name)  # or a job in this process (n_jobs=1): as a single run
            SweepInterrupts.sweep_stopped_by = name
            print("sgdexp: interrupted: the sweep's running jobs stop at their next step and write their "
                  "summaries, and no other job starts (Ctrl-C again kills them now)", file=sys.stderr, flush=True)
            stop.touch()  # before the signal goes on: a job that starts after it finds the file
            for pid in workers():
                try:
                    os.kill(pid, signal.SIGINT)
                except OSError:
                    pass

        previous = {signum: signal.signal(signum, on_interrupt) for signum in SIGNALS}
        had = os.environ.get(LAUNCHER_PID)
        os.environ[LAUNCHER_PID] = str(os.getpid())
        try:
            return launch(self, *args, **kwargs)
        except BaseException as err:
            if not SweepInterrupts.sweep_stopped_by or SweepInterrupts.killed:
                raise
            # a worker that the signal reached before its handler died of it (loky then reports the pool
            # broken, or the KeyboardInterrupt it raised): the sweep was interrupted all the same
            raise InterruptedJob(f"a worker process stopped before its job could record it ({type(err).__name__}); "
                                 f"each job that had started wrote its summary") from None
        finally:
            stop.unlink(missing_ok=True)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if had is None:
                os.environ.pop(LAUNCHER_PID, None)
            else:
                os.environ[LAUNCHER_PID] = had

    return launched


def spawning_with_sigint_ignored(module: str, function: str):
    """A wrapper of a launcher's `launch` that patches `module.function`, what starts a worker process,
    to run with SIGINT ignored when called from the main thread: the process inherits that across exec
    (Python then installs no KeyboardInterrupt for it), and so does what it starts, until sgdexp's
    handler takes over in a job (`SweepInterrupts.install`; a signal before that is seen through the
    stop file). The parent ignores SIGINT only while the process is spawned (0.4 ms for a loky worker's
    fork and exec): a Ctrl-C within it is lost, and the next one stops the sweep. Patched at the
    launch, which imports the launcher's library anyway: importing it for every command would cost
    each one's start-up (20-40 ms for submitit)."""

    def wrap(launch):
        @functools.wraps(launch)
        def launched(self, *args, **kwargs):
            owner = importlib.import_module(module)
            spawn = getattr(owner, function)
            if not getattr(spawn, "_ignores_sigint", False):
                @functools.wraps(spawn)
                def spawned(*args, **kwargs):
                    if threading.current_thread() is not threading.main_thread():
                        return spawn(*args, **kwargs)
                    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
                    try:
                        return spawn(*args, **kwargs)
                    finally:
                        signal.signal(signal.SIGINT, previous)

                spawned._ignores_sigint = True
                setattr(owner, function, spawned)
            return launch(self, *args, **kwargs)

        return launched

    return wrap


def patch_launchers() -> None:
    """Hydra's joblib and submitit_local launchers, where installed, launch with
    `stop_workers_on_interrupt` (submitit's SLURM launcher is left as it is: its jobs run elsewhere,
    and SLURM's signals are submitit's to handle). After Hydra's scan of its plugins, which loads their
    modules afresh (a class patched before it is not the one Hydra instantiates)."""
    from hydra.core.plugins import Plugins

    Plugins.instance()
    try:
        from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
    except ImportError:
        pass
    else:
        # loky's worker processes, each started by this function (looked up at each start)
        _patch_launch(JoblibLauncher, child_processes, None,
                      spawning_with_sigint_ignored("joblib.externals.loky.backend.fork_exec", "fork_exec"))
    try:
        from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher
    except ImportError:
        return
    _patch_launch(LocalLauncher, submitit_jobs, kill_submitit_jobs,
                  spawning_with_sigint_ignored("submitit.local.local", "start_controller"))


def _patch_launch(launcher: type, workers, kill_workers=None, inner=None) -> None:
    """`launcher.launch` (first wrapped by `inner`, if given) wrapped by `stop_workers_on_interrupt`, once."""
    if "launch" in vars(launcher) and getattr(launcher.launch, "_stops_workers", False):
        return
    launch = launcher.launch if inner is None else inner(launcher.launch)
    launcher.launch = stop_workers_on_interrupt(launch, workers, kill_workers)
    launcher.launch._stops_workers = True
