"""``RunConfig``: what the CLI decided, written once to ``RUN_DIR/config.json`` and read by every
rank of the farm. All checking happens in the CLI; the farm reads typed fields, never ``cfg.get``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class RunConfig:
    exp: str                        # experiment name (EXP)
    pilot: str                      # pilot package under pilots/
    algo: str                       # algorithm name (file stem)
    algo_file: str                  # absolute path of the optimizer script (.R or .py)
    db: str                         # SQLAlchemy URL of the store
    run_dir: str                    # this run's directory
    endpoint: str                   # ZeroMQ endpoint between the driver and the optimizer
    mode: str = "resident"          # resident | app
    settings: dict = field(default_factory=dict)  # the algorithm settings ("Params" handshake)
    space_file: str | None = None
    space_text: str | None = None   # the space file as the user wrote it
    space_json: dict | None = None  # the same space as JSON (eq/R/space.R export)
    timeout: float | None = None    # per-trial time limit in seconds (TIMEOUT)
    impute: float = math.nan        # what a plain EMEWS optimizer gets for a failed trial
    keep_models: int = 3            # model store: keep the best K model files
    resume: int | None = None       # RESUME: continue this experiment id (its transcript replayed)
    opt_timeout: float = 1800.0     # OPT_TIMEOUT: fail if the optimizer sends nothing this long
                                    # while every worker is idle
    store_wait: float = 600.0       # how long a store that went away mid-run is waited for
    stopper: dict | None = None     # STOPPER: early stopping rule and settings (farm/stoppers.py),
                                    # with "metric", the epoch_end value it watches; None: off

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["impute"] = None if math.isnan(self.impute) else self.impute  # strict JSON
        return json.dumps(d, indent=1)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        d = dict(d)
        if d.get("impute") is None:
            d["impute"] = math.nan
        return cls(**d)

    @classmethod
    def read(cls, path: str | Path) -> "RunConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError, ConfigError) as e:
            raise ConfigError(f"run configuration {path} cannot be read ({e}). It is written by "
                              f"`emews workflow`; start the run with `make workflow ...` rather "
                              f"than by hand.") from None
