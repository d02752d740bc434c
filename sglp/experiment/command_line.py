"""The command line's edges: the check before Hydra runs (an unknown option or malformed override is one message)
and the exit after it (bad input ends as one `sglp: error:` line and exit code 2, no traceback)."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from omegaconf import DictConfig

from sglp.experiment.cli import run

log = logging.getLogger("sglp")


def run_or_exit(cfg: DictConfig) -> None:
    """`run(cfg)`; bad input ends as one `sglp: error:` line and exit code 2 (no traceback)."""
    from hydra.errors import InstantiationException
    from omegaconf.errors import InterpolationResolutionError

    from sglp.core.errors import SGLPError

    try:
        run(cfg)
    except (SGLPError, InstantiationException, InterpolationResolutionError) as e:
        # Bad input: one message naming the problem and the fix, no traceback. Hydra wraps errors raised while
        # building a component, OmegaConf those of a resolver; unwrap ours, re-raise anything else.
        err: BaseException | None = e
        while err is not None and not isinstance(err, SGLPError):  # OmegaConf chains a resolver's error twice
            err = err.__cause__ or err.__context__
        node = re.search(r"full_key: (\S+)", str(e)) if not isinstance(e, SGLPError) else None
        if err is None and (stray := unexpected_setting(e)):  # a setting meant for another component
            name = f"{node.group(1)}.{stray[1]}" if node else stray[1]
            err = SGLPError(f"{name}: {stray[0]} takes no setting {stray[1]!r} (an experiment or method set it "
                            f"for another component): drop it with ~{name}, or choose a component that uses "
                            "it")  # fmt: skip
        if err is None:
            raise
        message = str(err)
        if node and isinstance(e, InterpolationResolutionError):
            message = f"{node.group(1)}: {message}"
        elif node and re.match(r"[a-z_][a-z0-9_]*(\s+entry)?=", message):  # a bare field: name the node that built it
            message = f"{node.group(1)}.{message}"
        log.error("%s", message)
        print(f"\nsglp: error: {message}", file=sys.stderr)
        sys.exit(2)


def unexpected_setting(e: BaseException) -> tuple[str, str] | None:
    """(class, argument) when Hydra failed to build a component because a config passed it an argument it does not
    take (a TypeError "X.__init__() got an unexpected keyword argument 'y'"), else None."""
    cause = e.__cause__
    hit = re.search(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'", str(cause))
    return (hit.group(1), hit.group(2)) if isinstance(cause, TypeError) and hit else None


HYDRA_MODES = set(
    "--cfg -c --package -p --config-path -cp --config-name -cn --config-dir -cd --info -i --shell-completion -sc "
    "--experimental-rerun --help -h --hydra-help".split()
)


def check_command_line(argv: list[str], config_dir: str | Path) -> str | None:
    """Compose the config for the command line before Hydra runs it: an unknown option or key, or a malformed
    override, becomes one message (None when it composes). A multirun checks every swept value."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    flags = [a for a in argv if a.startswith("-")]
    if any(f.split("=")[0] in HYDRA_MODES for f in flags):
        return None  # Hydra's own modes
    overrides = [
        a for a in argv if not a.startswith("-") and not a.startswith(("hydra.", "hydra/", "+hydra", "~hydra"))
    ]
    parser = OverridesParser.create()
    for override in overrides:  # one at a time: a message about a malformed one names it
        try:
            parser.parse_overrides([override])
        except HydraException as e:
            return f"cannot parse the override {override!r}: {' '.join(str(e).split())}"
    try:
        parsed = parser.parse_overrides(overrides)
        variants = [[o.input_line for o in parsed if not o.is_sweep_override()]]
        sweeps = [o for o in parsed if o.is_sweep_override()]
        if sweeps:  # each swept value once, the other sweeps at their first value
            firsts = [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" for o in sweeps]
            variants = [variants[0] + firsts[:i] + [f"{o.get_key_element()}={v}"] + firsts[i + 1 :]
                        for i, o in enumerate(sweeps) for v in o.sweep_string_iterator()]  # fmt: skip
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            for variant in variants:
                compose(config_name="config", overrides=variant)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        message = " ".join(str(e).split())
        return f"{message} (`python run.py --help` lists the config groups and their options)"
    return None
