"""``ablate: quirks``: one strategy entry expanded into the runs that measure what each quirk does.

A strategy entry with ``ablate: quirks`` stands for N + 2 strategy variants per seed, N being its
ablation units (:func:`albench.strategies.base.quirk_units` of the quirks protocol ``official``
switches on: one unit per quirk, except that quirks declared in one ``group``, which only make sense
together, form a single unit). Each variant has its own label, ``<key>@<variant>`` (``key``: the
entry's label, else its strategy name):

- ``<key>@official``: every quirk of the ablation (protocol ``official``);
- ``<key>@no-<unit>``, one per unit in declaration order: ``official`` without that unit's quirks;
- ``<key>@paper``: no quirk (protocol ``paper``).

An entry may list ``quirks:`` as well: those are then the quirks ablated (the top variant is
``<key>@base`` unless the list is exactly the official set), e.g. to leave out a quirk that does not
fit the dataset. Each variant resolves like an entry listing its quirks explicitly
(:func:`albench.plan.resolve_strategy`), so a flagged quirk (``best_on_test``) flags every variant
that has it. Every run records ``protocol`` (``official`` for every variant but ``paper``), its exact
``quirks`` and ``flags``, and ``ablation``: which entry it belongs to, its variant, the unit it
removes and the whole set of units (reports build the quirk impact tables from it).

The expansion works from the strategy's declared quirk list only, never from quirk names.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from albench.config import MAX_NAME_BYTES, Config, StrategyConfig, check_folder_name
from albench.errors import ConfigError

ABLATE_QUIRKS = "quirks"
SEP = "@"  # <key>@<variant>: '@' is legal in a folder name on every file system albench runs on
WITHOUT = "no-"


@dataclass(frozen=True)
class Variant:
    """One strategy variant of a sweep: the entry (with explicit ``quirks`` when ablated), the protocol
    run.json records, and the ``ablation`` record (None for an entry without ``ablate``)."""

    index: int  # position of the entry in the config's strategies
    strategy: StrategyConfig
    protocol: str
    ablation: dict | None = None

    @property
    def key(self) -> str:
        return self.strategy.key


def ablation_units(st: StrategyConfig, path: str) -> tuple[list[str], list[tuple[str, tuple[str, ...]]], bool]:
    """(base quirks, ablation units of them, whether the base is the official set) of an entry with
    ``ablate: quirks``; ConfigError naming ``path`` when there is nothing to ablate."""
    from albench.strategies.base import quirk_units
    from albench.strategies.registry import get_strategy

    cls = get_strategy(st.name)
    official = [q.name for q in cls.quirks if q.official]
    if st.quirks is None:
        base = official
    else:  # declaration order, whatever order the list gives
        base = [q.name for q in cls.quirks if q.name in set(st.quirks)]
    if not base:
        what = ("declares no quirk that protocol 'official' switches on" if st.quirks is None
                else "has an empty 'quirks' list")
        raise ConfigError(f"{path}.ablate", f"strategy {st.name!r} {what}: there is nothing to ablate",
                          f"remove {path}.ablate (see 'albench list quirks' for the strategies with quirks)", st.ablate)
    units = quirk_units(q for q in cls.quirks if q.name in set(base))
    return base, units, base == official


def expand_entry(st: StrategyConfig, index: int, protocol: str) -> list[Variant]:
    """The variants of the config's ``strategies[index]`` (one, itself, when it does not ablate)."""
    path = f"strategies[{index}]"
    if st.ablate is None:
        return [Variant(index, st, protocol)]
    if st.ablate != ABLATE_QUIRKS:  # the config's Literal refuses it first; kept for direct callers
        raise ConfigError(f"{path}.ablate", "must be 'quirks' or null", f"set {path}.ablate: quirks", st.ablate)
    base, units, is_official = ablation_units(st, path)
    top = "official" if is_official else "base"
    record = {"of": st.key, "base": list(base), "units": {u: list(m) for u, m in units}}
    variants = [(top, list(base), "official", None, [])]
    for unit, members in units:
        variants.append((f"{WITHOUT}{unit}", [q for q in base if q not in members], "official", unit, list(members)))
    variants.append(("paper", [], "paper", None, list(base)))
    out = []
    for name, quirks, proto, unit, removed in variants:
        kind = "without" if unit is not None else name if name in ("paper", "official") else "base"
        entry = replace(st, label=f"{st.key}{SEP}{name}", quirks=quirks, ablate=None)
        out.append(Variant(index, entry, proto, {**record, "variant": kind, "name": name, "unit": unit,
                                                 "removed": removed}))
    return out


def expand_strategies(cfg: Config) -> list[Variant]:
    """Every strategy variant of the sweep, in config order (an ablated entry's variants in the order
    of :func:`expand_entry`); ConfigError when an expanded label is no safe folder name, collides with
    another label, or when ``baseline`` names an ablated entry."""
    out: list[Variant] = []
    for i, st in enumerate(cfg.strategies):
        out.extend(expand_entry(st, i, cfg.protocol))
    seen: dict[str, int] = {}
    for v in out:
        if v.ablation is not None:
            check_folder_name(v.key, f"strategies[{v.index}].label",
                              f"give strategies[{v.index}] a shorter label: its ablation labels "
                              f"'<label>{SEP}<variant>' must stay within {MAX_NAME_BYTES} bytes")
        if v.key in seen:
            first, second = sorted({seen[v.key], v.index})
            raise ConfigError("strategies", f"label {v.key!r} of strategies[{second}] is also a label of "
                              f"strategies[{first}]" + (" (an ablation variant)" if v.ablation else ""),
                              f"give strategies[{first}] or strategies[{second}] another 'label'", v.key)
        seen[v.key] = v.index
    ablated = {st.key for st in cfg.strategies if st.ablate is not None}
    if cfg.baseline is not None and cfg.baseline in ablated:
        raise ConfigError("baseline", f"names {cfg.baseline!r}, an entry with 'ablate: quirks', which has no runs "
                          "under that label", "set baseline to another strategy (e.g. random), or list the variant "
                          "you want as its own entry with 'quirks: [...]'", cfg.baseline)
    return out


def describe_ablations(variants: list[Variant], seeds: int) -> list[str]:
    """One line per ablated entry, then one per variant with its quirks: what ``--dry-run`` prints."""
    lines = []
    for index in sorted({v.index for v in variants if v.ablation is not None}):
        mine = [v for v in variants if v.index == index]
        rec = mine[0].ablation
        n = len(rec["units"])
        grouped = [f"{u} ({', '.join(m)})" for u, m in rec["units"].items() if len(m) > 1]
        lines.append(f"ablation of strategies[{index}] {rec['of']!r}: {n} quirk unit{'s' if n != 1 else ''} -> "
                     f"{len(mine)} runs per seed, {len(mine) * seeds} in all"
                     + (f"; removed together: {'; '.join(grouped)}" if grouped else ""))
        for v in mine:
            q = ",".join(v.strategy.quirks) if v.strategy.quirks else "(none)"
            lines.append(f"  {v.key}\tprotocol={v.protocol}\tquirks={q}")
    return lines
