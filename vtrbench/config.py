"""Load a run config, fill its defaults and validate it against ``config/schema.yaml``.

The workflow (Snakefile) and the CLI both go through :func:`validate`, so a wrong key or type gives the same one
line wherever it is caught: the dotted key, what was wrong and what is allowed.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from vtrbench.registry import kind_of

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"


# YAML 1.1 reads "3e-3" (an exponent without a dot) as a string; a user typing it means a number.
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_value(raw: str) -> Any:
    """A value typed by a user (``--set``, ``snakemake --config``): YAML, with ``3e-3`` read as a number."""
    value = yaml.safe_load(raw)
    return float(value) if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value) else value


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


def validate_workflow(config: dict[str, Any], classes: bool = True) -> dict[str, Any]:
    """:func:`validate`, plus what a whole workflow config needs: at least one method and its seeds."""
    validate(config, classes)
    if not config["methods"]:
        raise ConfigError("config error at methods: no method configured; add at least one under `methods:`")
    return config


def load_schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def validate(config: dict[str, Any], classes: bool = True) -> dict[str, Any]:
    """Fill defaults in place and validate; raises :class:`ConfigError` with the offending key.

    ``classes``: also check every method's options against its class (:func:`check_method_options`, which imports
    the method code and with it torch). The Snakemake process plans with ``classes=False`` (the schema, the links
    between methods and the frame sweep, none of which needs torch) and checks the classes when the run starts.

    Values typed on the command line arrive as strings (``snakemake --config 'train={steps: 20}'`` parses every
    leaf with YAML's base loader); where the schema expects a number, boolean, list or null, a string is read as
    YAML first. Cross-section rules apply only between sections the caller gave (a rule may pass only ``dataset``).
    """
    given = set(config)
    schema = load_schema()
    _coerce_strings(config, schema)
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key, message = _describe(err)
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(f"config error at {key}: {message}{more}")
    _check_consistency(config, given)
    if classes:
        check_method_options(config)
    return config


def _describe(err: jsonschema.ValidationError) -> tuple[str, str]:
    """The dotted key a schema error is about and what to do; an unknown key is named itself, with the allowed
    ones (jsonschema names only the mapping that holds it); a bad method name says what a name may hold."""
    path = [str(p) for p in err.absolute_path]
    allowed = err.schema.get("properties", {}) if isinstance(err.schema, dict) else {}
    if err.validator == "additionalProperties" and isinstance(err.instance, dict) and allowed:
        unknown = sorted(set(err.instance) - set(allowed))
        if unknown:
            return ".".join([*path, unknown[0]]), f"unknown key; allowed here: {', '.join(sorted(allowed))}"
    if "propertyNames" in err.schema_path and isinstance(err.instance, str):
        return ".".join(path) or "<top level>", (
            f"the name {err.instance!r} cannot be a result folder and a Snakemake wildcard; use letters, digits, "
            f"'_', '.' and '-', starting with a letter or digit (pattern {err.schema.get('pattern')})"
        )
    return ".".join(path) or "<top level>", err.message


def _coerce_strings(node: Any, schema: dict[str, Any]) -> None:
    """Read, in place, command-line strings where ``schema`` expects another JSON type (see :func:`validate`)."""
    if not isinstance(node, dict | list):
        return
    if isinstance(node, list):
        items = schema.get("items", {})
        for i, value in enumerate(node):
            node[i] = _read_string(value, items)
            _coerce_strings(node[i], items)
        return
    properties, extra = schema.get("properties", {}), schema.get("additionalProperties", {})
    for key, value in node.items():
        sub = properties.get(key, extra if isinstance(extra, dict) else {})
        node[key] = _read_string(value, sub)
        _coerce_strings(node[key], sub)


def _read_string(value: Any, schema: dict[str, Any]) -> Any:
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not isinstance(value, str) or not kinds or "string" in kinds:
        return value
    try:
        return parse_value(value)
    except yaml.YAMLError:
        return value


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
    if "pretrain" in given and config["pretrain"]["enabled"]:
        _check_pretrain(config)
    if {"train", "model"} <= given and config["train"]["freeze_towers"] != "none":  # a unit that builds towers
        _check_frozen_towers(config)
    _check_links(config["methods"])
    _check_budget_tested(config)
    seeds = config.get("seeds", [])
    if len(set(seeds)) != len(seeds):
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        raise ConfigError(f"config error at seeds: {repeated} listed twice; every seed is one run, give each once")
    if "latency" in given and config["latency"]["enabled"]:
        _check_gallery_memory(config)
    if "scale" in given and config["scale"]["enabled"]:
        _check_scale(config)
    stored = config["dataset"]["frames"]
    for section in {"train", "eval"} & given:
        if config[section]["frames"] > stored:
            raise ConfigError(
                f"config error at {section}.frames: cannot sample {config[section]['frames']} frames from the "
                f"dataset.frames={stored} stored per video"
            )


def scale_methods(config: dict[str, Any]) -> dict[str, int]:
    """Method -> its largest gallery (``scale.methods``, embedding or pair methods; empty: every embedding method up
    to the largest of ``scale.gallery_sizes``: a pair method's exact search scores every pair, so it is listed by
    name)."""
    scale, methods = config["scale"], config["methods"]
    chosen = scale["methods"] or {
        m: max(scale["gallery_sizes"]) for m, e in methods.items() if kind_of(e.get("class", "")) == "embedding"
    }
    return {m: int(n) for m, n in chosen.items()}


def n_test_videos(config: dict[str, Any]) -> int:
    """Videos in the synthetic test split: the smallest gallery the scale step can search."""
    return 4 * int(config["dataset"].get("synthetic", {}).get("test_groups", 250))


def _check_scale(config: dict[str, Any]) -> None:
    """Distractors are generated SynthVTT videos; the galleries start from the whole test split; a method needs a
    gallery of its own (embedding or pair; a re-ranker's cost at scale is composed from its two stages)."""
    if config["dataset"]["name"] != "synthetic":
        raise ConfigError(
            f"config error at scale.enabled: the gallery-scale step generates SynthVTT distractors; dataset.name is "
            f"{config['dataset']['name']!r} (set scale.enabled: false)"
        )
    n_test = n_test_videos(config)
    small = [n for n in config["scale"]["gallery_sizes"] if n < n_test]
    if small:
        raise ConfigError(
            f"config error at scale.gallery_sizes: {small} is smaller than the {n_test:,}-video test split every "
            "gallery starts from; give sizes of at least that"
        )
    methods = config["methods"]
    for name, largest in scale_methods(config).items():
        if name not in methods or kind_of(methods[name].get("class", "")) not in ("embedding", "pair"):
            raise ConfigError(
                f"config error at scale.methods: {name!r} is not an embedding or pair method of this config; list "
                "trained methods (a re-ranker's latency at scale is composed from its two stages by the tables)"
            )
        if largest < n_test:
            raise ConfigError(
                f"config error at scale.methods.{name}: {largest:,} is smaller than the {n_test:,}-video test split"
            )


def _check_budget_tested(config: dict[str, Any]) -> None:
    methods = config["methods"]
    for name in (config.get("plateau") or {}).get("methods") or []:
        if name not in methods or methods[name].get("class") == "rerank":
            raise ConfigError(
                f"config error at plateau.methods: {name!r} is not a trained method of this config "
                f"(methods: {', '.join(methods)}); list trained methods only"
            )


def _check_frozen_towers(config: dict[str, Any]) -> None:
    """Frozen towers are pretrained ones: a frozen random tower would only measure a random projection."""
    frozen = ("text", "frame") if config["train"]["freeze_towers"] == "both" else ("frame",)
    pretrained = config.get("pretrain", {}).get("enabled") or all(config["model"][t]["pretrained"] for t in frozen)
    if not pretrained:
        named = " and ".join(f"model.{t}.pretrained" for t in frozen)
        raise ConfigError(
            "config error at train.freeze_towers: frozen towers must be pretrained ones; set pretrain.enabled: true "
            f"(SynthVTT) or give {named}"
        )


def _check_pretrain(config: dict[str, Any]) -> None:
    """The pretraining stage generates SynthVTT frames at the dataset's resolution, and its checkpoint becomes both
    towers: the towers are not also named by hand."""
    if config["dataset"]["name"] != "synthetic":
        raise ConfigError(
            f"config error at pretrain.enabled: the pretraining stage generates SynthVTT frames; dataset.name is "
            f"{config['dataset']['name']!r} (give a real dataset's towers with model.text/frame.pretrained)"
        )
    for tower in ("text", "frame"):
        if config["model"][tower]["pretrained"]:
            raise ConfigError(
                f"config error at model.{tower}.pretrained: pretrain.enabled gives both towers its checkpoint; "
                "leave model.text.pretrained and model.frame.pretrained null (or set pretrain.enabled: false)"
            )
    section = config["pretrain"]
    if config["dataset"]["resolution"] % section["frame"]["patch_size"]:
        raise ConfigError(
            f"config error at pretrain.frame.patch_size: {section['frame']['patch_size']} must divide "
            f"dataset.resolution={config['dataset']['resolution']}"
        )
    for tower in ("text", "frame"):
        if section[tower]["hidden"] % section[tower]["heads"]:
            raise ConfigError(
                f"config error at pretrain.{tower}.heads: {section[tower]['heads']} must divide "
                f"pretrain.{tower}.hidden={section[tower]['hidden']}"
            )


def _check_gallery_memory(config: dict[str, Any]) -> None:
    """Refuse a latency gallery this machine cannot hold, before any job (the latency job would die after every
    training). A lower bound: the sampled vectors and FAISS's copy of them, 4 bytes per float, at the widest
    ``dim`` option of the methods (64 when none says)."""
    largest = max(config["latency"]["gallery_sizes"])
    dim = max([int(e["dim"]) for e in config["methods"].values() if isinstance(e.get("dim"), int)] or [64])
    need = 2 * 4 * dim * largest
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > 0.8 * have:
        raise ConfigError(
            f"config error at latency.gallery_sizes: a gallery of {largest:,} videos needs at least "
            f"{need / 1e9:.1f} GB (2 copies x 4 bytes x {dim} floats per video) and this machine has "
            f"{have / 1e9:.1f} GB; lower the largest size"
        )


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML (or JSON) config, apply ``overrides`` (nested dict) and validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
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


# Options that name another configured method, and the kinds that method must have.
METHOD_LINKS = {"init_from": ("embedding",), "first": ("embedding",), "second": ("pair",)}


def check_method_options(config: dict[str, Any]) -> None:
    """Each method's class must exist and accept its options, and the frame sweep's method must take each swept
    value (imports the method classes)."""
    from vtrbench.sweep import SWEPT_OPTION

    methods = config["methods"]
    for name, entry in methods.items():
        try:
            _parse_entry(name, entry)
        except (ValueError, TypeError) as err:
            message = str(err)
            if message.startswith(f"methods.{name}."):  # a key of its own: name it
                raise ConfigError(f"config error at {message}") from None
            raise ConfigError(f"config error at methods.{name}: {message.removeprefix(f'methods.{name}: ')}") from None
    sweep = config.get("sweep", {})
    base = sweep.get("method")
    for loss in sweep.get("losses", []) if base in methods else []:
        try:
            _parse_entry(base, {**methods[base], SWEPT_OPTION: loss})
        except (ValueError, TypeError) as err:
            raise ConfigError(
                f"config error at sweep.method: {base!r} (class {methods[base]['class']!r}) cannot take "
                f"{SWEPT_OPTION}={loss!r}: {err}"
            ) from None


def _parse_entry(name: str, entry: dict[str, Any]) -> None:
    """Build the options dataclass of one method entry (raises what ``parse_options`` or the class raises)."""
    from vtrbench.methods import check_design, resolve, split_budget
    from vtrbench.options import parse_options

    cls = resolve(entry["class"])
    check_design(cls.design, f"{entry['class']} (its class attribute design)")
    options_class = cls.options_class
    _, own = split_budget(options_class, {k: v for k, v in entry.items() if k != "class"}, f"methods.{name}")
    parse_options(options_class, own, f"methods.{name}")


def _check_links(methods: dict[str, Any]) -> None:
    """Every option naming another method must name a configured method of the right kind (kinds from
    ``vtrbench.registry``, without importing a registered class)."""
    kinds = {}
    for name, entry in methods.items():
        try:
            kinds[name] = kind_of(entry["class"])
        except ValueError as err:
            raise ConfigError(f"config error at methods.{name}: {err}") from None
    for name, entry in methods.items():
        for option, allowed in METHOD_LINKS.items():
            target = entry.get(option)
            if target is None:
                continue
            if not isinstance(target, str):
                raise ConfigError(
                    f"config error at methods.{name}.{option}: expected the name of a configured method, got "
                    f"{target!r}; the config defines: {', '.join(methods)}"
                )
            if target not in methods:
                raise ConfigError(
                    f"config error at methods.{name}.{option}: {target!r} is not a configured method; "
                    f"the config defines: {', '.join(methods)}"
                )
            if kinds[target] not in allowed:
                raise ConfigError(
                    f"config error at methods.{name}.{option}: {target!r} is a {kinds[target]} method; "
                    f"{option} must name a {' or '.join(allowed)} method"
                )
