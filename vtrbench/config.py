"""Load a run config, fill its defaults and validate it against ``config/schema.yaml``.

The workflow (Snakefile) and the CLI both go through :func:`validate`, so a wrong key or type gives the same one
line wherever it is caught: the dotted key, what was wrong and what is allowed.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"


class ConfigError(ValueError):
    """A config value the schema or a method rejects; the message names the key."""


def _with_defaults(validator_class: type) -> type:
    """A validator that fills ``default`` values of missing properties before checking them (jsonschema FAQ)."""
    check_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # type: ignore[no-untyped-def]
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def load_schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults in place and validate; raises :class:`ConfigError` with the offending key.

    Cross-section rules apply only between sections the caller gave (a rule may pass only ``dataset``).
    """
    given = set(config)
    seeds = config.get("seeds")
    if isinstance(seeds, list):  # `snakemake --config seeds=[0,1]` yields strings inside lists
        config["seeds"] = [int(s) if isinstance(s, str) and s.isdigit() else s for s in seeds]
    errors = sorted(_Validator(load_schema()).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(f"config error at {key}: {err.message}{more}")
    _check_consistency(config, given)
    return config


def _check_consistency(config: dict[str, Any], given: set[str]) -> None:
    """Cross-field rules a JSON schema cannot express."""
    synthetic = config["dataset"].get("synthetic", {})
    if synthetic.get("min_objects", 2) > synthetic.get("max_objects", 3):
        raise ConfigError("config error at dataset.synthetic: min_objects must be <= max_objects")
    if config["dataset"]["name"] != "synthetic" and not config["dataset"].get("data_root"):
        raise ConfigError(
            f"config error at dataset.data_root: dataset {config['dataset']['name']!r} needs the folder with its "
            "annotation files: snakemake --config 'dataset={data_root: /path/to/data}', "
            "or --set dataset.data_root=/path for the CLI (README, Scaling out)"
        )
    _check_methods(config["methods"])
    stored = config["dataset"]["frames"]
    for section in {"train", "eval"} & given:
        if config[section]["frames"] > stored:
            raise ConfigError(
                f"config error at {section}.frames: cannot sample {config[section]['frames']} frames from the "
                f"dataset.frames={stored} stored per video"
            )


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML config, apply ``overrides`` (nested dict) and validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(config).__name__}")
    if overrides:
        deep_update(config, overrides)
    return validate(config)


def deep_update(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def _check_methods(methods: dict[str, Any]) -> None:
    """Each method's class must exist and accept its options (checked before anything runs)."""
    from vtrbench.methods import resolve
    from vtrbench.options import parse_options

    for name, entry in methods.items():
        options = {k: v for k, v in entry.items() if k != "class"}
        try:
            parse_options(resolve(entry["class"]).options_class, options, f"methods.{name}")
        except (ValueError, TypeError) as err:
            message = str(err).removeprefix(f"methods.{name}: ")
            raise ConfigError(f"config error at methods.{name}: {message}") from None
