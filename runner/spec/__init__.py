"""Job files: TOML text -> a typed, validated :class:`JobSpec`."""

from runner.spec.load import LoadedSpec, load_spec, parse_spec, spec_hash
from runner.spec.model import JobSpec
from runner.spec.problems import Problem, SpecError

__all__ = ["JobSpec", "LoadedSpec", "Problem", "SpecError", "load_spec", "parse_spec", "spec_hash"]
