"""`python -m sgdexp [overrides]`: compose the config with Hydra and run the chosen task."""
import os
import re
import sys
import warnings

import hydra
from omegaconf import DictConfig

from sgdexp.app import run
from sgdexp.config import conf_dir, presets_as_choices, register_configs

CONF = conf_dir()


def refuse(line: str) -> None:
    """A user mistake: its one line, and exit status 2 (as a run's own refusals and argparse's)."""
    print(f"sgdexp: error: {line}", file=sys.stderr)
    sys.exit(2)


def check_group_choices(argv) -> None:
    """`model=foo` with no conf/model/foo.yaml: one line naming the choices (Hydra prints a screenful)."""
    for arg in argv:
        match = re.fullmatch(r"([a-z_]+)=\[?([\w,.-]*)\]?", arg)
        if not match or not (CONF / match[1]).is_dir() or match[1] == "hydra":
            continue
        group, values = match[1], [v for v in match[2].split(",") if v]
        known = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
        for value in values:
            if value not in known and value != "null":
                allowed = f"one of {', '.join(known)}" if known else f"none: conf/{group}/ has no members yet"
                refuse(f"{group}={value!r} is not allowed: {allowed}")


def quote_home(argv):
    """`key=~/data` as `key='~/data'`: Hydra's override lexer rejects a bare `~` and the shell does not
    expand it after `=`; paths that take `~` (dataset.root) expand it when they are used."""
    return [re.sub(r"^([\w.+/@-]+)=(~[^'\",\[\]]*)$", r"\1='\2'", arg) for arg in argv]


def hide_schema_groups() -> None:
    """`--help` lists the config groups users choose from, not the internal `schema/*` ones the members
    extend (Hydra has no switch for it, so its group listing is filtered)."""
    from hydra._internal.hydra import Hydra

    listing = Hydra.format_config_groups

    def public(self, predicate, compact=True):
        return listing(self, lambda g: predicate(g) and g != "schema" and not g.startswith("schema/"), compact)

    Hydra.format_config_groups = public


def quiet_refused_jobs() -> None:
    """A refused or interrupted job printed its own line as it ran, and the sweep's last line names it
    again: Hydra's "Error executing job with overrides: [...]", which it writes before re-raising a
    failed job's error, would say it a third time. Other failures keep that line (Hydra has no switch
    for it)."""
    from hydra.core.utils import JobReturn, JobStatus

    from sgdexp.errors import InterruptedJob, RefusedJob

    hydras = JobReturn.return_value

    def return_value(self):
        if self.status == JobStatus.FAILED and isinstance(self._return_value, (RefusedJob, InterruptedJob)):
            raise self._return_value
        return hydras.fget(self)

    JobReturn.return_value = property(return_value, hydras.fset)


def sweeper_local(err: BaseException, name: str, kind):
    """The sweeper's local `name` (of type `kind`) where `err` passed through it, else None: Hydra keeps
    the sweep's directory and its launcher's results nowhere else (`BasicSweeper.sweep`), hence the walk."""
    tb, found = err.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "sweep" and isinstance(tb.tb_frame.f_locals.get(name), kind):
            found = tb.tb_frame.f_locals[name]
        tb = tb.tb_next
    return found


def sweep_dir(err: BaseException):
    """The directory of the sweep that `err` passed through (a Path; None where it was not raised in one)."""
    from pathlib import Path

    return sweeper_local(err, "sweep_dir", Path)


def remove_unlaunched_sweep(err: BaseException) -> None:
    """Hydra's sweeper makes the sweep directory and its multirun.yaml before it composes the jobs'
    configs: when one of them fails (a key that a swept member lacks), nothing ran, so the directory
    that holds only that file goes too (a report would list it as an empty sweep)."""
    from pathlib import Path

    sweep = sweep_dir(err)
    if sweep is None or not sweep.is_dir() or [p.name for p in sweep.iterdir()] != ["multirun.yaml"]:
        return
    (sweep / "multirun.yaml").unlink()
    sweep.rmdir()
    for parent in sweep.resolve().parents:  # multirun/ made for it under the working directory, if empty
        if Path.cwd().resolve() not in parent.parents or any(parent.iterdir()):
            break
        parent.rmdir()


def sweep_results(err: BaseException, kind):
    """(the launcher's results of the sweep that `err` ended, the messages of its jobs that ended in a
    `kind` exception)."""
    results = sweeper_local(err, "results", (list, tuple)) or ()
    return results, [str(r._return_value) for r in results if isinstance(getattr(r, "_return_value", None), kind)]


def refused_jobs_line(err: BaseException) -> str:
    """The sweep's last line when its jobs refused their configs: every refused job with its reason
    (Hydra's sweeper raises the first failed job's exception and looks no further)."""
    from sgdexp.errors import RefusedJob

    results, refused = sweep_results(err, RefusedJob)
    if not refused:  # not raised through a sweeper we know: the one error we have
        refused = [str(err)]
    if len(refused) == len(results):
        jobs = "the sweep's one job was refused" if len(results) == 1 else f"all {len(results)} jobs of the sweep were refused"
    elif len(refused) == 1:
        jobs = "a job of the sweep was refused (its other jobs ran)"
    else:
        jobs = f"{len(refused)} of the sweep's {len(results)} jobs were refused (the others ran)"
    return f"sgdexp: error: {jobs}: {'; '.join(refused)}"


def interrupted_sweep_line(err: BaseException) -> str:
    """The last line of a sweep that Ctrl-C stopped in its worker processes (`sgdexp.interrupts`):
    how far each job got, and the command's addition that continues it."""
    from hydra.core.utils import JobStatus

    from sgdexp.errors import InterruptedJob

    results, stopped = sweep_results(err, InterruptedJob)
    done = sum(r.status == JobStatus.COMPLETED for r in results)
    return (f"sgdexp: the sweep was interrupted: {'; '.join(stopped or [str(err)])}"
            f"{f' ({done} completed)' if done else ''}; {continuing_command(sweep_dir(err))}")


def continuing_command(sweep) -> str:
    """What continues an interrupted sweep whose directory is `sweep` (None: not known)."""
    where = f" hydra.sweep.dir={sweep}" if sweep is not None else ""
    return f"the same command with trainer.resume=true{where} continues it"


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")
def main(cfg: DictConfig) -> float:
    return run(cfg)


def cli() -> None:
    sys.argv[1:] = quote_home(presets_as_choices(sys.argv[1:]))
    check_group_choices(sys.argv[1:])
    from sgdexp.cli_checks import check_every_job_first, check_launcher, check_output_dirs

    problem = check_launcher(sys.argv[1:]) or check_output_dirs(sys.argv[1:])
    if problem:
        refuse(problem)
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        hide_schema_groups()
    register_configs()
    check_every_job_first()
    quiet_refused_jobs()
    from sgdexp.interrupts import patch_launchers

    patch_launchers()
    # Hydra prints its composition errors over several lines and exits; let them reach us instead,
    # so that an unknown key or a bad value is one line (sgdexp.cli_checks).
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    # conf/hydra/launcher/submitit_slurm.yaml sets sgdexp's SLURM defaults over the plugin's schema of
    # the same name, which Hydra accepts with a deprecation warning on every run: not the user's concern.
    warnings.filterwarnings("ignore", message=r"\s*.hydra/launcher/\w+. is validated against ConfigStore schema")
    # torch's forward-mode AD (jvp, used for the landscapes' Hessian products) loads its decompositions
    # through torch.jit.script, which warns of its own deprecation on first use: torch's, not the user's
    warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)
    from hydra.errors import ConfigCompositionException, OverrideParseException

    from sgdexp.errors import InterruptedJob, RefusedJob

    try:
        main()
    except (ConfigCompositionException, OverrideParseException) as err:
        from sgdexp.cli_checks import composition_error_line

        remove_unlaunched_sweep(err)
        refuse(composition_error_line(err, sys.argv[1:], CONF))
    except RefusedJob as err:  # each refused job said why as it ran; the sweep's exit names them all
        print(refused_jobs_line(err), file=sys.stderr)
        sys.exit(2)
    except InterruptedJob as err:  # Ctrl-C in a joblib sweep: each job wrote its summary
        from sgdexp.interrupts import SweepInterrupts, exit_status

        print(interrupted_sweep_line(err), file=sys.stderr)
        sys.exit(exit_status(SweepInterrupts.sweep_stopped_by))
    except KeyboardInterrupt as err:
        # a second Ctrl-C in a sweep (its jobs killed), a submitit_local sweep's Ctrl-C (its jobs write their
        # summaries), or one outside any run (no sweep directory: nothing to continue)
        from sgdexp.interrupts import exit_status

        sweep = sweep_dir(err)
        print(f"sgdexp: interrupted{f': {continuing_command(sweep)}' if sweep is not None else ''}", file=sys.stderr)
        sys.exit(exit_status(str(err)))


if __name__ == "__main__":
    cli()
